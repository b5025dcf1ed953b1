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

"""The bulk delta path of the state store on every backend.

``commit_batch`` writes the rows a batch leaves behind with one upsert
statement per table and chunk (``unnest`` + ``ON CONFLICT`` on
PostgreSQL, ``ON DUPLICATE KEY UPDATE`` on MariaDB, ``ON CONFLICT`` on
SQLite) and one bulk delete per table; ``load_table`` reads a table back
with one bulk decode. What must hold: the stored bytes are those of the
snapshot path, the last change of a key wins, a re-applied batch changes
nothing, and a failed statement rolls the whole batch back.
"""

import datetime
import decimal
import uuid

import sqlalchemy as sa

from consumer import row_upsert
from consumer import state
from oslo_publish import wire
from tests import base

UTC = datetime.timezone.utc


def _row(i, name='r'):
    return {'id': i, 'name': '%s%d "q", \u00e9' % (name, i),
            'at': datetime.datetime(2026, 1, 1, 12, 0, i % 60, tzinfo=UTC),
            'price': decimal.Decimal('%d.5' % i), 'ok': bool(i % 2),
            'f': i / 4.0, 'none': None}


def _ins(table, key, row):
    return wire.Change(table, wire.INSERT, key, row, None, ())


def _upd(table, key, row):
    return wire.Change(table, wire.UPDATE, key, row, {}, tuple(row))


def _del(table, key):
    return wire.Change(table, wire.DELETE, key, None, {}, ())


class _UpsertContract(object):

    def setUp(self):
        super().setUp()
        self.store = state.StateStore.from_url(self.db.url)
        self.addCleanup(self.store.close)
        self.store.upgrade()

    def stored(self, stream, table):
        with self.store.engine.connect() as conn:
            return {r.key_hash: (r.key_json, r.row_json) for r in
                    conn.execute(sa.select(state.rows).where(
                        state.rows.c.stream == stream,
                        state.rows.c.table_name == table))}

    def commit(self, seq, changes, stream='s'):
        self.store.commit_batch(stream, 'c', 'f', seq, None, changes,
                                {'t': 'v1', 'u': 'v1'})

    def test_batch_larger_than_a_chunk_matches_the_snapshot_path(self):
        """Inserts, updates and deletes over several chunks and tables."""
        count = state._CHUNK + 250
        changes = [_ins('t', (i,), _row(i)) for i in range(count)]
        changes += [_ins('u', ('k%d' % i, i), _row(i, 'u'))
                    for i in range(30)]
        self.commit(1, changes)
        # One batch: update every third row twice, delete every fifth,
        # re-insert a deleted one, delete a key that never existed.
        changes = []
        for i in range(0, count, 3):
            changes.append(_upd('t', (i,), _row(i, 'first')))
            changes.append(_upd('t', (i,), _row(i, 'second')))
        for i in range(0, count, 5):
            changes.append(_del('t', (i,)))
        changes.append(_ins('t', (10,), _row(10, 'back')))
        changes.append(_del('t', (count + 99,)))
        changes.append(_del('u', ('k3', 3)))
        self.commit(2, changes)
        expected = {}
        for i in range(count):
            if i == 10:
                expected[(i,)] = _row(i, 'back')
            elif i % 5 == 0:
                continue
            elif i % 3 == 0:
                expected[(i,)] = _row(i, 'second')
            else:
                expected[(i,)] = _row(i)
        self.assertEqual(expected, self.store.load_table('s', 't'))
        self.assertEqual(expected, dict(self.store.load_rows('s', 't')))
        self.store.replace_table('snap', 'c', 'f', 't', expected, 2, 'v1')
        self.assertEqual(self.stored('snap', 't'), self.stored('s', 't'))
        self.assertEqual(29, len(self.store.load_table('s', 'u')))
        self.assertEqual(2, self.store.load('s', 'c', 'f')['t'].seq)

    def test_reapplied_batch_changes_nothing(self):
        """A redelivered batch leaves the same rows (idempotent)."""
        changes = [_ins('t', (i,), _row(i)) for i in range(50)]
        changes += [_upd('t', (7,), _row(7, 'x')), _del('t', (8,))]
        self.commit(1, changes)
        first = self.stored('s', 't')
        self.commit(1, changes)
        self.assertEqual(first, self.stored('s', 't'))
        self.assertEqual(49, len(first))

    def test_update_replaces_the_stored_row(self):
        """An upsert of an existing key rewrites its row in place."""
        self.commit(1, [_ins('t', (1,), _row(1))])
        self.commit(2, [_upd('t', (1,), _row(1, 'new'))])
        self.assertEqual({(1,): _row(1, 'new')},
                         self.store.load_table('s', 't'))
        self.assertEqual(1, len(self.stored('s', 't')))

    def test_streams_do_not_share_rows(self):
        """The same key in two streams is two rows."""
        self.commit(1, [_ins('t', (1,), _row(1, 'a'))], stream='a')
        self.commit(1, [_ins('t', (1,), _row(1, 'b'))], stream='b')
        self.commit(2, [_del('t', (1,))], stream='a')
        self.assertEqual({}, self.store.load_table('a', 't'))
        self.assertEqual({(1,): _row(1, 'b')},
                         self.store.load_table('b', 't'))

    def test_failed_upsert_rolls_the_batch_back(self):
        """Deletes and the position roll back with a failing upsert."""
        self.commit(1, [_ins('t', (i,), _row(i)) for i in range(5)])
        before = self.stored('s', 't')
        original = row_upsert.upsert_rows

        def failing(*args, **kwargs):
            raise RuntimeError('injected')

        row_upsert.upsert_rows = failing
        self.addCleanup(setattr, row_upsert, 'upsert_rows', original)
        self.assertRaises(RuntimeError, self.commit, 2,
                          [_del('t', (0,)), _ins('t', (9,), _row(9))])
        self.assertEqual(before, self.stored('s', 't'))
        self.assertEqual(1, self.store.load('s', 'c', 'f')['t'].seq)

    def test_load_table_decodes_every_value_type(self):
        """Tagged values and composite keys come back unchanged."""
        row = {'id': uuid.UUID(int=3), 'blob': b'\x00\xff',
               'day': datetime.date(2026, 2, 3), 'doc': {'k': [1, 2]},
               'inf': float('-inf'), 'text': '"__t" in a value'}
        keys = [(uuid.UUID(int=3), 'a'), ('b', 2), (1, 'x')]
        self.commit(1, [_ins('t', key, dict(row)) for key in keys])
        self.assertEqual({key: row for key in keys},
                         self.store.load_table('s', 't'))


class TestUpsertSQLite(_UpsertContract, base.BackendTestCase):
    BACKEND = 'sqlite'


class TestUpsertPostgreSQL(_UpsertContract, base.BackendTestCase):
    BACKEND = 'postgresql'


class TestUpsertMySQL(_UpsertContract, base.BackendTestCase):
    BACKEND = 'mysql'
