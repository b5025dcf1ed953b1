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


"""Revision 0002 gives every stream an epoch, existing ones included."""

import sqlalchemy as sa

from oslo_publish import migration
from oslo_publish import outbox
from oslo_publish import relay
from tests import base


class _EpochMigrationTests(object):

    def test_upgrade_fills_an_epoch_for_existing_streams(self):
        """Streams made at 0001 each get a distinct 32-hex-digit epoch."""
        migration.upgrade(self.engine, '0001')
        with self.engine.begin() as conn:
            for name, seq in (('a', 4), ('b', 7)):
                conn.execute(sa.text(
                    'INSERT INTO oslo_publish_streams (stream, last_seq) '
                    'VALUES (:s, :n)'), {'s': name, 'n': seq})
        migration.upgrade(self.engine)
        self.assertEqual(migration.head(), migration.current(self.engine))
        epochs = [relay.read_epoch(self.engine, name) for name in 'ab']
        for epoch in epochs:
            self.assertRegex(epoch, '^[0-9a-f]{32}$')
        self.assertNotEqual(epochs[0], epochs[1])
        with self.engine.connect() as conn:
            self.assertEqual([4, 7], [r[0] for r in conn.execute(
                sa.select(outbox.streams.c.last_seq)
                .order_by(outbox.streams.c.stream))])

    def test_downgrade_drops_the_column(self):
        """Downgrading to 0001 removes the epoch column again."""
        migration.upgrade(self.engine)
        from alembic import command
        with self.engine.begin() as conn:
            command.downgrade(migration._config(conn), '0001')
        columns = {c['name'] for c in sa.inspect(self.engine).get_columns(
            'oslo_publish_streams')}
        self.assertNotIn('epoch', columns)


class TestEpochMigrationSQLite(_EpochMigrationTests, base.BackendTestCase):
    BACKEND = 'sqlite'


class TestEpochMigrationMySQL(_EpochMigrationTests, base.BackendTestCase):
    BACKEND = 'mysql'


class TestEpochMigrationPostgreSQL(_EpochMigrationTests,
                                   base.BackendTestCase):
    BACKEND = 'postgresql'
