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

"""Revision 0003 rewrites the key hashes of integer keys stored before."""

from alembic import command
import sqlalchemy as sa

from consumer import migration
from consumer import state
from consumer import store_codec
from oslo_publish import wire
from tests import base

STREAM, DRIVER, KIND = 'nova', 'oslo_publish', 'bus'

#: Keys stored at revision 0002: integer keys of one to three parts, one
#: past 64 bits, text, a composite of text and integer.
KEYS = [(1,), (-7,), (2 ** 63 - 1,), (2 ** 63,), (3, 4), (5, 6, 7),
        ('a',), ('b', 1)]


class _KeyHashMigrationTests(object):

    def setUp(self):
        super().setUp()
        self.conf.set_override('connection', self.db.url,
                               'consumer_database')

    def _stored(self):
        with self.engine.connect() as conn:
            return dict(conn.execute(sa.select(
                state.rows.c.key_json, state.rows.c.key_hash)).all())

    def _store_at_0002(self):
        migration.upgrade(self.engine, '0002')
        with self.engine.begin() as conn:
            conn.execute(state.rows.insert(), [
                {'stream': STREAM, 'table_name': 't',
                 'key_hash': store_codec.sha_key_hash(
                     store_codec.key_text(key)),
                 'key_json': store_codec.key_text(key),
                 'row_json': store_codec.row_text({'id': repr(key)})}
                for key in KEYS])

    def test_upgrade_rewrites_integer_keys_only(self):
        """Integer keys get the ordered form, the others keep SHA-256."""
        self._store_at_0002()
        migration.upgrade(self.engine)
        self.assertEqual('0003', migration.current(self.engine))
        stored = self._stored()
        for key in KEYS:
            text = store_codec.key_text(key)
            self.assertEqual(store_codec.key_hash(text), stored[text], key)
        self.assertEqual('8000000000000001', stored['[1]'])
        self.assertEqual('80000000000000038000000000000004',
                         stored['[3,4]'])
        self.assertEqual(store_codec.sha_key_hash('["a"]'), stored['["a"]'])
        self.assertEqual(store_codec.sha_key_hash('[%d]' % 2 ** 63),
                         stored['[%d]' % 2 ** 63])

    def test_rows_stored_before_are_found_by_deltas(self):
        """After the upgrade a delta updates / deletes the old rows."""
        self._store_at_0002()
        store = state.StateStore(self.conf)
        self.addCleanup(store.close)
        store.upgrade()
        store.commit_batch(STREAM, DRIVER, KIND, 5, None, [
            wire.Change('t', wire.UPDATE, (1,), {'id': 'new'}, {}, ('id',)),
            wire.Change('t', wire.DELETE, (3, 4), None, {}, ()),
            wire.Change('t', wire.DELETE, ('a',), None, {}, ())],
            {'t': 'v1'})
        rows = dict(store.load_rows(STREAM, 't'))
        self.assertEqual({'id': 'new'}, rows[(1,)])
        self.assertNotIn((3, 4), rows)
        self.assertNotIn(('a',), rows)
        self.assertEqual(len(KEYS) - 2, len(rows))

    def test_downgrade_restores_sha256(self):
        """Downgrading to 0002 stores SHA-256 hashes again."""
        self._store_at_0002()
        before = self._stored()
        migration.upgrade(self.engine)
        with self.engine.begin() as conn:
            command.downgrade(migration.alembic_cfg(conn), '0002')
        self.assertEqual(before, self._stored())


class TestKeyHashMigrationSQLite(_KeyHashMigrationTests,
                                 base.BackendTestCase):
    BACKEND = 'sqlite'


class TestKeyHashMigrationMySQL(_KeyHashMigrationTests,
                                base.BackendTestCase):
    BACKEND = 'mysql'


class TestKeyHashMigrationPostgreSQL(_KeyHashMigrationTests,
                                     base.BackendTestCase):
    BACKEND = 'postgresql'
