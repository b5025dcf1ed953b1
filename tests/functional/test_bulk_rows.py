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

"""The bulk path of mirrored rows on every state store backend.

What must hold: ``replace_table`` (COPY on PostgreSQL, batched INSERTs
elsewhere) stores exactly the bytes the delta path (``commit_batch``)
stores for the same rows, including text that CSV must quote, and
``load_rows`` gives back equal rows in key order.
"""

import datetime
import decimal
import uuid

import sqlalchemy as sa

from consumer import bulk_rows
from consumer import state
from oslo_publish import wire
from tests import base

AWKWARD = ['plain', 'comma, "quote"', 'line\nbreak\r\n', 'tab\tand \\',
           'ünïcødé ✓', '', 'NULL', '\\N', None]


def _rows(count):
    out = {}
    for i in range(1, count + 1):
        out[(i,)] = {
            'id': i, 'name': AWKWARD[i % len(AWKWARD)],
            'at': datetime.datetime(2026, 1, 1, 12, 0, i % 60, 123),
            'price': decimal.Decimal('%d.25' % i), 'blob': b'\x00\x01%d' % i,
            'u': uuid.UUID(int=i), 'f': i / 3.0, 'ok': bool(i % 2),
            'doc': {'k': [i, 'v']}}
    return out


class _BulkRowsContract(object):

    def setUp(self):
        super().setUp()
        self.store = state.StateStore.from_url(self.db.url)
        self.addCleanup(self.store.close)
        self.store.upgrade()

    def stored(self, stream):
        with self.store.engine.connect() as conn:
            return {r.key_hash: (r.key_json, r.row_json) for r in
                    conn.execute(sa.select(state.rows).where(
                        state.rows.c.stream == stream))}

    def assertSameBytesBothPaths(self, rows):
        """``rows`` stored by replace_table and by commit_batch alike."""
        self.store.replace_table('bulk', 'c', 'f', 't', rows, 5, 'v1')
        changes = [wire.Change('t', wire.INSERT, key, row, None, ())
                   for key, row in rows.items()]
        self.store.commit_batch('delta', 'c', 'f', 5, None, changes,
                                {'t': 'v1'})
        self.assertEqual(len(rows), len(self.stored('bulk')))
        self.assertEqual(self.stored('delta'), self.stored('bulk'))

    def test_replace_table_stores_the_delta_path_bytes(self):
        """replace_table and commit_batch store byte-identical rows."""
        rows = _rows(len(AWKWARD) * 3)
        self.assertSameBytesBothPaths(rows)

    def test_plain_rows_store_the_delta_path_bytes(self):
        """Rows of text, integers and nulls only: the same bytes too.

        (The COPY formats such rows column by column.)
        """
        rows = {(i,): {'id': i, 'name': AWKWARD[i % len(AWKWARD)],
                       'n': -i if i % 3 else None, 'host': 'h%d' % i}
                for i in range(1, len(AWKWARD) * 3)}
        rows.update({(1000 + i,): {'id': 1000 + i, 'name': 'n%d' % i,
                                   'n': i, 'host': 'h'}
                     for i in range(bulk_rows.STREAM_CHUNK + 5)})
        self.assertSameBytesBothPaths(rows)
        self.assertEqual(rows, dict(self.store.load_rows('bulk', 't')))

    def test_load_rows_round_trips_in_key_order(self):
        """What replace_table stored, load_rows returns, in key order."""
        rows = _rows(2 * bulk_rows.INSERT_CHUNK + 7)
        self.store.replace_table('s', 'c', 'f', 't', rows, 9, 'v1')
        loaded = list(self.store.load_rows('s', 't'))
        self.assertEqual(sorted(rows), [k for k, _r in loaded])
        self.assertEqual(rows, dict(loaded))
        self.assertEqual(9, self.store.load('s', 'c', 'f')['t'].seq)

    def test_failure_mid_stream_leaves_the_previous_table(self):
        """A failure after some chunks were sent rolls all of it back."""
        old = _rows(5)
        self.store.replace_table('s', 'c', 'f', 't', old, 3, 'v1')
        before = self.stored('s')

        class Failing(dict):
            def items(self):
                for n, item in enumerate(dict.items(self)):
                    if n == 3 * bulk_rows.STREAM_CHUNK + 1:
                        raise RuntimeError('decoder died')
                    yield item
        new = Failing(_rows(4 * bulk_rows.STREAM_CHUNK))
        self.assertRaises(RuntimeError, self.store.replace_table,
                          's', 'c', 'f', 't', new, 9, 'v1')
        self.assertEqual(before, self.stored('s'))
        self.assertEqual(3, self.store.load('s', 'c', 'f')['t'].seq)

    def test_streamed_copy_of_many_chunks(self):
        """Several streamed chunks (and a partial last one) all arrive."""
        rows = _rows(3 * bulk_rows.STREAM_CHUNK + 11)
        self.store.replace_table('s', 'c', 'f', 't', rows, 4, 'v1')
        self.assertEqual(rows, dict(self.store.load_rows('s', 't')))


class TestBulkRowsSQLite(_BulkRowsContract, base.BackendTestCase):
    BACKEND = 'sqlite'


class TestBulkRowsPostgreSQL(_BulkRowsContract, base.BackendTestCase):
    BACKEND = 'postgresql'


class TestBulkRowsMySQL(_BulkRowsContract, base.BackendTestCase):
    BACKEND = 'mysql'
