# Copyright 2026 The oslo.publish Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""The store's bulk row encoding: same bytes as the wire, fewer calls."""

import datetime
import decimal
import json
import random
import uuid

from hypothesis import given
from hypothesis import strategies as st

from consumer import store_codec
from oslo_publish import wire
from tests import base


def _reference_row(row):
    return json.dumps(wire.encode_row(row), sort_keys=True,
                      separators=(',', ':'), ensure_ascii=False,
                      allow_nan=False)


def _reference_key(key):
    return json.dumps([wire.encode_value(part) for part in key],
                      sort_keys=True, separators=(',', ':'),
                      ensure_ascii=False, allow_nan=False)


_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.binary(max_size=8), st.uuids(), st.dates())


class TestStoreCodec(base.TestCase):

    @given(st.dictionaries(st.text(max_size=5), _VALUES, max_size=6))
    def test_row_text_is_the_wire_encoding(self, row):
        """Plain or tagged, the text is json(wire.encode_row(row))."""
        self.assertEqual(_reference_row(row), store_codec.row_text(row))

    @given(st.lists(st.one_of(st.integers(), st.text(), st.uuids(),
                              st.booleans()), min_size=1, max_size=3))
    def test_key_text_is_the_wire_encoding(self, parts):
        key = tuple(parts)
        self.assertEqual(_reference_key(key), store_codec.key_text(key))

    def test_encode_changes_keeps_the_last_change_of_a_key(self):
        """Per table, a key is an upsert or a delete, never both."""
        changes = [
            wire.Change('t', wire.INSERT, (1,), {'v': 1}, None, ()),
            wire.Change('t', wire.UPDATE, (1,), {'v': 2}, {}, ('v',)),
            wire.Change('t', wire.INSERT, (2,), {'v': 3}, None, ()),
            wire.Change('t', wire.DELETE, (2,), None, {}, ()),
            wire.Change('u', wire.INSERT, (2,), {'v': 4}, None, ()),
            wire.Change('t', wire.DELETE, (3,), None, {}, ()),
            wire.Change('t', wire.INSERT, (3,), {'v': 5}, None, ()),
        ]
        encoded = store_codec.encode_changes(changes)
        h = store_codec.key_hash
        self.assertEqual(
            {'t': [(h('[1]'), '[1]', '{"v":2}'),
                   (h('[3]'), '[3]', '{"v":5}')],
             'u': [(h('[2]'), '[2]', '{"v":4}')]}, encoded.upserts)
        self.assertEqual({'t': [h('[2]')]}, encoded.deletes)

    def test_encode_changes_matches_change_by_change_encoding(self):
        """The batched encoding equals encoding each key's last change."""
        rng = random.Random(7)
        ops = (wire.INSERT, wire.UPDATE, wire.DELETE)
        keys = [(1,), (2,), (2 ** 40,), ('k', 3), (4, 5), (-6,)]
        changes = []
        for n in range(300):
            op = rng.choice(ops)
            day = datetime.date(2026, 1, 2)
            after = None if op == wire.DELETE else {
                'v': n, 'f': 0.5, 's': 'x\\y', 'd': day}
            changes.append(wire.Change(rng.choice(('t', 'u')), op,
                                       rng.choice(keys), after, None, ()))
        last = {}
        for change in changes:
            last[(change.table, store_codec.key_text(change.key))] = change
        upserts, deletes = {}, {}
        for (table, text), change in last.items():
            digest = store_codec.key_hash(text)
            if change.op == wire.DELETE:
                deletes.setdefault(table, []).append(digest)
            else:
                upserts.setdefault(table, []).append(
                    (digest, text, store_codec.row_text(change.after)))
        encoded = store_codec.encode_changes(changes)
        self.assertEqual(upserts, encoded.upserts)
        self.assertEqual(deletes, encoded.deletes)

    def test_decode_table_round_trips(self):
        rows = {(1,): {'a': 'x', 'n': None, 'f': 0.5},
                ('k', 2): {'at': datetime.date(2026, 1, 2),
                           'd': decimal.Decimal('1.10')},
                (uuid.UUID(int=5),): {'s': '"__t"', 'b': b'\x00'}}
        found = [(store_codec.key_text(k), store_codec.row_text(r))
                 for k, r in rows.items()]
        self.assertEqual(rows, store_codec.decode_table(found))

    def test_decode_table_of_nothing(self):
        self.assertEqual({}, store_codec.decode_table([]))

    def test_malformed_texts_are_refused_one_by_one(self):
        """A text that breaks the joined parse is still found and raised."""
        good = ('[1]', '{"a":1}')
        self.assertRaises(ValueError, store_codec.decode_table,
                          [good, ('[2]', '{"a":1},{"b"')])
        self.assertRaises(ValueError, store_codec.decode_table,
                          [good, ('[2]', '1,2')])
        self.assertRaises(wire.WireError, store_codec.decode_table,
                          [good, ('[[1]]', '{"a":1}')])
        self.assertRaises(wire.WireError, store_codec.decode_table,
                          [good, ('[2]', '{"a":{"__t":"nope","v":"1"}}')])
        self.assertRaises(wire.WireError, store_codec.decode_table,
                          [good, ('[2]', '[1]')])


_INT64 = st.integers(min_value=-2 ** 63, max_value=2 ** 63 - 1)
_KEY_PART = st.one_of(st.integers(), st.text(max_size=5), st.booleans())


class TestKeyHash(base.TestCase):
    """Integer keys sort by their hash; every key hash is distinct."""

    @given(st.lists(st.tuples(_INT64, _INT64), min_size=2, max_size=30,
                    unique=True))
    def test_integer_keys_sort_like_their_hashes(self, keys):
        hashes = [store_codec.key_hash(store_codec.key_text(k))
                  for k in keys]
        self.assertEqual(sorted(keys), [k for _h, k in
                                        sorted(zip(hashes, keys))])
        for digest in hashes:
            self.assertRegex(digest, '^[0-9a-f]{32}$')

    @given(st.lists(st.lists(_KEY_PART, min_size=1, max_size=4)
                    .map(tuple), max_size=30, unique_by=repr))
    def test_distinct_keys_have_distinct_hashes(self, keys):
        texts = {store_codec.key_text(k) for k in keys}
        hashes = {store_codec.key_hash(t) for t in texts}
        self.assertEqual(len(texts), len(hashes))
        for digest in hashes:
            self.assertLessEqual(len(digest), 64)

    def test_forms(self):
        h = store_codec.key_hash
        self.assertEqual('8000000000000001', h('[1]'))
        self.assertEqual('7fffffffffffffff', h('[-1]'))
        self.assertEqual('0000000000000000', h('[%d]' % -2 ** 63))
        self.assertEqual(store_codec.sha_key_hash('[%d]' % 2 ** 63),
                         h('[%d]' % 2 ** 63))
        self.assertEqual(store_codec.sha_key_hash('[1,2,3,4]'),
                         h('[1,2,3,4]'))
        self.assertEqual(store_codec.sha_key_hash('[true]'), h('[true]'))
        self.assertEqual(store_codec.sha_key_hash('["1"]'), h('["1"]'))
        self.assertEqual(store_codec.sha_key_hash('[1.5]'), h('[1.5]'))

    @given(st.lists(st.one_of(
        st.tuples(st.integers()),
        st.tuples(st.integers(), st.integers()),
        st.tuples(st.booleans()), st.tuples(st.text(max_size=3))),
        max_size=20))
    def test_bulk_hashes_are_the_single_ones(self, keys):
        texts = [store_codec.key_text(k) for k in keys]
        self.assertEqual([store_codec.key_hash(t) for t in texts],
                         store_codec.key_hashes(keys, texts))


_PLAIN_VALUES = st.one_of(st.none(), st.booleans(), st.integers(),
                          st.text(max_size=4),
                          st.floats(allow_nan=False, allow_infinity=False))


class TestBulkForms(base.TestCase):
    """The C-level bulk paths give what the one-by-one functions give."""

    @given(st.lists(st.one_of(
        st.tuples(st.integers()),
        st.tuples(st.integers(), st.integers()),
        st.tuples(st.booleans()), st.tuples(st.text(max_size=3)),
        st.tuples(st.uuids())), max_size=20))
    def test_bulk_key_texts_are_the_single_ones(self, keys):
        self.assertEqual([store_codec.key_text(k) for k in keys],
                         store_codec.key_texts(keys))

    @given(st.dictionaries(
        st.one_of(st.tuples(st.integers()),
                  st.tuples(st.text(max_size=3), st.integers()),
                  st.tuples(st.dates())),
        st.dictionaries(st.text(max_size=3), st.one_of(
            _PLAIN_VALUES, st.dates(), st.lists(st.integers(), max_size=2)),
            max_size=4), max_size=8))
    def test_decode_table_matches_row_by_row(self, rows):
        found = [(store_codec.key_text(k), store_codec.row_text(r))
                 for k, r in rows.items()]
        expected = {wire.decode_key(json.loads(k)):
                    wire.decode_row(json.loads(r)) for k, r in found}
        self.assertEqual(expected, store_codec.decode_table(found))

    def test_plain_table_is_built_without_per_row_checks(self):
        found = [('[1]', '{"a":1}'), ('["x",2]', '{"b":null}')]
        self.assertEqual({(1,): {'a': 1}, ('x', 2): {'b': None}},
                         store_codec.decode_table(found))

    def test_empty_key_is_still_refused(self):
        self.assertRaises(wire.WireError, store_codec.decode_table,
                          [('[1]', '{"a":1}'), ('[]', '{"a":2}')])
