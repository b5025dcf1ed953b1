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

"""Tests of the wire vocabulary shared by both halves."""

import datetime
import decimal
import enum
import uuid

from hypothesis import given
from hypothesis import strategies as st

from oslo_publish import wire
from tests import base


class Colour(enum.Enum):
    red = 1
    green = 2


_SAMPLES = [
    None, True, False, 0, -7, 2 ** 70, 'text', 'ünïcode', 1.5,
    float('inf'), float('-inf'),
    datetime.datetime(2026, 11, 22, 1, 2, 3, 456789),
    datetime.datetime(2026, 11, 22, 1, 2, 3, tzinfo=datetime.timezone(
        datetime.timedelta(hours=5, minutes=30))),
    datetime.date(2026, 2, 28), datetime.time(23, 59, 58, 1),
    datetime.timedelta(days=-1, seconds=5, microseconds=7),
    decimal.Decimal('1.20'), decimal.Decimal('-0.000001'),
    b'\x00\xffbytes', uuid.UUID('12345678-1234-5678-1234-567812345678'),
    {'a': [1, 2, {'b': None}]}, [1, 'x'],
]


class TestValueEncoding(base.TestCase):

    def test_round_trip_is_lossless(self):
        """Every documented type decodes to an equal value of same type."""
        for value in _SAMPLES:
            decoded = wire.decode_value(wire.encode_value(value))
            self.assertEqual(value, decoded)
            self.assertIs(type(value), type(decoded))

    def test_timezone_survives(self):
        """An aware datetime keeps its offset; a naive one stays naive."""
        aware = _SAMPLES[12]
        self.assertEqual(aware.utcoffset(), wire.decode_value(
            wire.encode_value(aware)).utcoffset())
        self.assertIsNone(wire.decode_value(
            wire.encode_value(_SAMPLES[11])).tzinfo)

    def test_nan_round_trips(self):
        """NaN is tagged and comes back as NaN."""
        value = wire.decode_value(wire.encode_value(float('nan')))
        self.assertNotEqual(value, value)

    def test_enum_is_encoded_by_name(self):
        """An Enum member is sent as the name SQLAlchemy stores."""
        self.assertEqual('green', wire.encode_value(Colour.green))

    def test_unknown_type_is_refused(self):
        """A value of an unknown type raises instead of being dropped."""
        self.assertRaises(wire.WireError, wire.encode_value, object())

    def test_bad_tagged_values_are_malformed(self):
        """Unknown tags, bad payloads and untagged objects are rejected."""
        for bad in ({'__t': 'nope', 'v': 'x'},
                    {'__t': 'decimal', 'v': 'abc'},
                    {'__t': 'datetime', 'v': 7},
                    {'__t': 'bytes', 'v': '!!!'},
                    {'x': 1}, [1, 2], float('nan')):
            err = self.assertRaises(wire.WireError, wire.decode_value, bad)
            self.assertEqual('malformed', err.reason)

    @given(st.dictionaries(st.text(max_size=8), st.one_of(
        st.none(), st.booleans(), st.integers(), st.text(),
        st.floats(allow_nan=False), st.datetimes(), st.dates(),
        st.decimals(allow_nan=False, allow_infinity=False), st.binary(),
        st.uuids())))
    def test_rows_round_trip(self, row):
        """Any row of supported values survives encode and decode."""
        self.assertEqual(row, wire.decode_row(wire.encode_row(row)))

    def test_key_is_hashable_tuple(self):
        """Decoded keys are tuples usable as dict keys."""
        key = wire.decode_key([1, wire.encode_value(
            datetime.date(2026, 1, 1))])
        self.assertEqual((1, datetime.date(2026, 1, 1)), key)
        self.assertEqual({key: 1}[key], 1)

    def test_unhashable_key_is_malformed(self):
        """A JSON value in a key is refused."""
        self.assertRaises(wire.WireError, wire.decode_key,
                          [{'__t': 'json', 'v': {'a': 1}}])


def _delta(**overrides):
    msg = wire.delta_message(
        'nova',
        [{'seq': 5, 'txid': 'a', 'committed_at': wire.utcnow_text(),
          'changes': [{'table': 't', 'op': 'insert', 'key': [1],
                       'after': {'id': 1}}]},
         {'seq': 6, 'txid': 'b', 'committed_at': wire.utcnow_text(),
          'changes': [{'table': 't', 'op': 'update', 'key': [1],
                       'after': {'id': 1, 'x': 2}, 'before': {'x': 1},
                       'changed': ['x']},
                      {'table': 't', 'op': 'delete', 'key': [1],
                       'before': {'id': 1, 'x': 2}}]}],
        {'t': {'pk': ['id'], 'version': 'v1'}})
    msg.update(overrides)
    return msg


class TestMessages(base.TestCase):

    def test_valid_delta_passes(self):
        """A well-formed delta message validates."""
        msg = _delta()
        wire.validate(msg)
        self.assertEqual((5, 6), (msg['first_seq'], msg['last_seq']))

    def test_heartbeat_passes(self):
        """A heartbeat validates and carries the seq."""
        msg = wire.heartbeat_message('nova', 9)
        wire.validate(msg)
        self.assertEqual(9, msg['seq'])

    def test_structural_errors_are_malformed(self):
        """Each broken part of a delta is reported as malformed."""
        broken = [
            _delta(stream=''), _delta(kind='other'),
            _delta(first_seq=7), _delta(last_seq='6'),
            _delta(tables={'t': {'pk': [], 'version': 'x'}}),
            _delta(transactions=[]),
            _delta(first_seq=True),
        ]
        msg = _delta()
        msg['transactions'][1]['changes'][0]['op'] = 'upsert'
        broken.append(msg)
        msg = _delta()
        msg['transactions'][0]['changes'][0]['key'] = [1, 2]
        broken.append(msg)
        msg = _delta()
        msg['transactions'][1]['changes'][1].pop('before')
        broken.append(msg)
        msg = _delta()
        msg['transactions'][0]['changes'][0]['table'] = 'other'
        broken.append(msg)
        for msg in broken:
            err = self.assertRaises(wire.WireError, wire.validate, msg)
            self.assertEqual('malformed', err.reason)

    def test_invalidation_round_trips(self):
        """A table invalidation validates, decodes and encodes back."""
        msg = _delta()
        inv = {'table': 't', 'op': 'invalidate', 'cause': 'upsert'}
        msg['transactions'][0]['changes'].append(inv)
        wire.validate(msg)
        change = wire.decode_change(inv)
        self.assertEqual(wire.INVALIDATE, change.op)
        self.assertIsNone(change.key)
        self.assertEqual('upsert', change.cause)
        self.assertEqual(inv, wire.encode_change(change))
        self.assertEqual(change, wire.invalidation('t', 'upsert'))

    def test_invalidation_needs_cause_and_known_table(self):
        """An invalidation lacking a cause or a listed table is malformed."""
        for inv in ({'table': 't', 'op': 'invalidate'},
                    {'table': 't', 'op': 'invalidate', 'cause': ''},
                    {'table': 'x', 'op': 'invalidate', 'cause': 'upsert'}):
            msg = _delta()
            msg['transactions'][0]['changes'].append(inv)
            err = self.assertRaises(wire.WireError, wire.validate, msg)
            self.assertEqual('malformed', err.reason)

    def test_epoch_is_carried_and_checked(self):
        """Messages carry their epoch; a bad one is malformed."""
        epoch = wire.new_epoch()
        self.assertEqual(32, len(epoch))
        hb = wire.heartbeat_message('nova', 3, epoch=epoch)
        wire.validate(hb)
        self.assertEqual(epoch, wire.message_epoch(hb))
        self.assertIsNone(wire.message_epoch(_delta()))
        err = self.assertRaises(wire.WireError, wire.validate,
                                _delta(epoch=7))
        self.assertEqual('malformed', err.reason)

    def test_format_version_parsing(self):
        """Format versions parse as (major, minor); junk is malformed."""
        self.assertEqual((1, 1), wire.parse_format(_delta()))
        self.assertEqual((2, 3), wire.parse_format({'format': '2.3'}))
        for bad in ({}, {'format': 1}, {'format': '1'}, {'format': 'a.b'}):
            self.assertRaises(wire.WireError, wire.parse_format, bad)


class TestSignatures(base.TestCase):

    def test_signed_message_verifies(self):
        """A message signed with the key passes the check."""
        msg = wire.sign(_delta(), 's3cret')
        wire.check_signature(msg, 's3cret')

    def test_tampering_is_detected(self):
        """Changing any member after signing breaks the signature."""
        msg = wire.sign(_delta(), 's3cret')
        msg['transactions'][0]['changes'][0]['after']['id'] = 2
        err = self.assertRaises(wire.WireError, wire.check_signature, msg,
                                's3cret')
        self.assertEqual('bad_signature', err.reason)

    def test_wrong_key_and_unsigned(self):
        """Another key is a bad signature; no signature is unsigned."""
        msg = wire.sign(_delta(), 'one')
        err = self.assertRaises(wire.WireError, wire.check_signature, msg,
                                'two')
        self.assertEqual('bad_signature', err.reason)
        err = self.assertRaises(wire.WireError, wire.check_signature,
                                _delta(), 'two')
        self.assertEqual('unsigned', err.reason)

    def test_non_ascii_signature_is_a_bad_signature(self):
        """Any forged text, ASCII or not, is reported as bad_signature."""
        for forged in ('\x80', '\u00e9' * 64, '\ud800'):
            msg = _delta()
            msg['signature'] = forged
            err = self.assertRaises(wire.WireError, wire.check_signature,
                                    msg, 'key')
            self.assertEqual('bad_signature', err.reason)

    def test_canonical_ignores_key_order(self):
        """The canonical encoding does not depend on member order."""
        self.assertEqual(wire.canonical({'a': 1, 'b': [2]}),
                         wire.canonical({'b': [2], 'a': 1}))

    def test_no_key_no_check(self):
        """Without a key nothing is required."""
        wire.check_signature(_delta(), None)
        self.assertNotIn(wire.SIGNATURE, wire.sign(_delta(), None))


class TestSchemaVersion(base.TestCase):

    def test_order_independent_and_change_sensitive(self):
        """Column order does not matter; names and types do."""
        base = wire.schema_version([('id', 'INTEGER'), ('x', 'TEXT')])
        self.assertEqual(base, wire.schema_version(
            [('x', 'TEXT'), ('id', 'INTEGER')]))
        self.assertNotEqual(base, wire.schema_version(
            [('id', 'INTEGER'), ('x', 'VARCHAR(10)')]))
        self.assertNotEqual(base, wire.schema_version(
            [('id', 'INTEGER'), ('x', 'TEXT'), ('y', 'TEXT')]))

    def test_type_text(self):
        """Types render without a dialect."""
        import sqlalchemy as sa
        self.assertEqual('VARCHAR(10)', wire.type_text(sa.String(10)))
        self.assertEqual('NUMERIC(10, 2)',
                         wire.type_text(sa.Numeric(10, 2)))
