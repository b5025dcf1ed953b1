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

"""StagedTables: snapshot rows written to the store while being read.

What must hold: the rows and positions appear only when ``finish``
commits; until then, and after an abort or a failure of the writer,
every reader sees the previous rows and positions.
"""

import sqlalchemy as sa

from consumer import state
from oslo_publish import wire
from tests import base


def _rows(first, count, tag):
    return [((i,), {'id': i, 'name': '%s-%d' % (tag, i)})
            for i in range(first, first + count)]


class TestStagedTablesPostgreSQL(base.BackendTestCase):
    BACKEND = 'postgresql'

    def setUp(self):
        super().setUp()
        self.store = state.StateStore.from_url(self.db.url)
        self.addCleanup(self.store.close)
        self.store.upgrade()
        self.old = dict(_rows(1, 5, 'old'))
        self.store.replace_table('s', 'c', 'f', 't', self.old, 3, 'v1')

    def stored(self):
        with self.store.engine.connect() as conn:
            return sorted(tuple(r) for r in conn.execute(sa.select(
                state.rows.c.table_name, state.rows.c.key_json,
                state.rows.c.row_json).where(state.rows.c.stream == 's')))

    def staged(self):
        stage = self.store.stage_tables('s', 'c', 'f')
        self.assertIsNotNone(stage)
        self.addCleanup(stage.abort)
        return stage

    def test_finish_commits_rows_and_positions(self):
        """Every page of every table lands, positions at the watermark."""
        stage = self.staged()
        new_t = _rows(1, 2500, 'new')
        stage.table('t')
        for start in range(0, len(new_t), 1000):
            stage.add(new_t[start:start + 1000])
        stage.table('u')
        stage.add(_rows(1, 3, 'u'))
        self.assertEqual(dict(self.old), dict(self.store.load_rows('s', 't')))
        stage.finish(9, {'t': 'v2', 'u': 'v1'})
        self.assertEqual(dict(new_t), dict(self.store.load_rows('s', 't')))
        self.assertEqual(dict(_rows(1, 3, 'u')),
                         dict(self.store.load_rows('s', 'u')))
        positions = self.store.load('s', 'c', 'f')
        self.assertEqual((9, 'v2'), (positions['t'].seq,
                                     positions['t'].schema_version))
        self.assertEqual(9, positions['u'].seq)

    def test_abort_mid_table_leaves_the_previous_state(self):
        """An abort after some pages rolls every table back."""
        before = self.stored()
        stage = self.staged()
        stage.table('u')
        stage.add(_rows(1, 10, 'u'))
        stage.table('t')
        stage.add(_rows(1, 1500, 'new'))
        stage.abort()
        self.assertEqual(before, self.stored())
        positions = self.store.load('s', 'c', 'f')
        self.assertEqual(3, positions['t'].seq)
        self.assertNotIn('u', positions)

    def test_writer_failure_is_raised_and_rolled_back(self):
        """A row the store cannot take fails finish; nothing changes."""
        before = self.stored()
        stage = self.staged()
        stage.table('t')
        stage.add(_rows(1, 1200, 'new') + [((2000,), {'x': object()})])
        self.assertRaises(wire.WireError, stage.finish, 9, {'t': 'v1'})
        self.assertEqual(before, self.stored())
        self.assertEqual(3, self.store.load('s', 'c', 'f')['t'].seq)

    def test_not_staged_without_persisted_rows(self):
        """Persist off: positions only, written at install."""
        store = state.StateStore.from_url(self.db.url, persist_rows=False)
        self.addCleanup(store.close)
        self.assertIsNone(store.stage_tables('s', 'c', 'f'))


class TestStagedTablesOtherBackends(base.BackendTestCase):
    """SQLite and MySQL load whole tables at install (no COPY)."""

    BACKEND = 'sqlite'

    def test_not_staged(self):
        store = state.StateStore.from_url(self.db.url)
        self.addCleanup(store.close)
        store.upgrade()
        self.assertIsNone(store.stage_tables('s', 'c', 'f'))


class TestStagedTablesMySQL(TestStagedTablesOtherBackends):
    BACKEND = 'mysql'
