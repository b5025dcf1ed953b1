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

"""End to end with ``capture = logical`` on PostgreSQL.

The host process (:mod:`tests.functional.consumer_host` with
``CONSUMER_HOST_CAPTURE=logical``) reads the database's log through a
pgoutput slot on a private cluster with ``wal_level = logical``
(:mod:`tests.private_pg`); the consumer is the same as for session
capture. The flows of :mod:`tests.functional.test_consumer_e2e` run
unchanged (the snapshot watermark under concurrent writers included),
and writes made by a process with no middleware at all (this test's
own connection: raw SQL, ``ON DELETE CASCADE``, a trigger, ``INSERT ...
SELECT``, an upsert) are mirrored exactly with the periodic resync off.
"""

import fixtures
import sqlalchemy as sa

from tests import base
from tests.functional import test_consumer_e2e as e2e
from tests import private_pg


class _PrivateDatabase(fixtures.Fixture):
    """A database on the private logical cluster (DatabaseFixture API)."""

    backend = 'postgresql'

    def __init__(self, case):
        super().__init__()
        self._case = case

    def _setUp(self):
        self.url = self._case.private_database()
        self.engine = sa.create_engine(self.url)
        self.addCleanup(self.engine.dispose)


class _LogicalHost(private_pg.LogicalPGMixin):

    HOST_BACKEND = 'postgresql'

    def setUpConsumerSide(self, state_backend, **consumer_options):
        super().setUpConsumerSide(state_backend, **consumer_options)
        self.useFixture(fixtures.EnvironmentVariable(
            'CONSUMER_HOST_CAPTURE', 'logical'))
        self.host_db = self.useFixture(_PrivateDatabase(self))


class TestLogicalFlows(_LogicalHost, e2e._Flows, base.TestCase):
    STATE_BACKEND = 'sqlite'


class TestLogicalDurability(_LogicalHost, e2e._Durability, base.TestCase):
    STATE_BACKEND = 'postgresql'


class TestLogicalBypassingWrites(_LogicalHost, e2e._Base, base.TestCase):
    """Writes no session saw are mirrored exactly (no periodic resync)."""

    STATE_BACKEND = 'sqlite'

    def test_writes_without_middleware_are_mirrored(self):
        self.conf.set_override('resync_interval', 0.0, 'consumer')
        self.host.command('preload', rows=20)
        self.raw(
            'ALTER TABLE pairs ADD CONSTRAINT pairs_item FOREIGN KEY (a) '
            'REFERENCES items (id) ON DELETE CASCADE',
            """CREATE FUNCTION ping_on_rename() RETURNS trigger AS $$
               BEGIN
                 INSERT INTO pings (id, ts) VALUES (NEW.id, 1.5)
                 ON CONFLICT (id) DO UPDATE SET ts = pings.ts + 1;
                 RETURN NEW;
               END $$ LANGUAGE plpgsql""",
            'CREATE TRIGGER items_renamed AFTER UPDATE OF name ON items '
            'FOR EACH ROW EXECUTE FUNCTION ping_on_rename()')
        consumer = self.consumer()
        self.assertTrue(consumer.wait_synced(60))
        self.assertConverges(consumer)
        # Raw SQL, and a trigger writing another published table.
        self.raw("UPDATE items SET name = 'raw' WHERE id IN (3, 4)")
        # Rows that a cascade will delete.
        self.raw("INSERT INTO pairs (a, b, v) VALUES (5, 'x', 1), "
                 "(5, 'y', 2), (6, 'z', 3)")
        self.raw('DELETE FROM items WHERE id = 5')
        # INSERT ... SELECT and an upsert (both invalidate with session
        # capture; exact rows here).
        self.raw("INSERT INTO items (id, name, n, price) SELECT id + 1000, "
                 "'copy-' || name, n, price FROM items WHERE id < 10")
        self.raw("INSERT INTO items (id, name, n) VALUES (7, 'up', 70), "
                 "(2000, 'new', 1) ON CONFLICT (id) DO UPDATE SET "
                 "name = EXCLUDED.name, n = EXCLUDED.n")
        self.settle()
        self.assertConverges(consumer)
        view = consumer.view()
        self.assertEqual('raw', view.get('items', (3,))['name'])
        self.assertIsNone(view.get('items', (5,)))
        self.assertIsNone(view.get('pairs', (5, 'x')))
        self.assertEqual({'a': 6, 'b': 'z', 'v': 3},
                         dict(view.get('pairs', (6, 'z'))))
        self.assertEqual(1.5, view.get('pings', (4,))['ts'])
        self.assertEqual('copy-raw', view.get('items', (1003,))['name'])
        self.assertEqual('up', view.get('items', (7,))['name'])
        self.wait_caught_up(consumer)
        # Applied as deltas: one initial sync, nothing else.
        self.assertEqual(1, self.resyncs(consumer, 'initial'))
        for cause in ('periodic', 'invalidate', 'gap'):
            self.assertEqual(0, self.resyncs(consumer, cause), cause)
