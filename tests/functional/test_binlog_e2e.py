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

"""End to end with ``capture = logical`` on MariaDB (row binlog).

The host process (:mod:`tests.functional.consumer_host` with
``CONSUMER_HOST_CAPTURE=logical``) reads the row binlog of a private
MariaDB server (:mod:`tests.private_mariadb`); the consumer is the same
as for session capture. The flows of
:mod:`tests.functional.test_consumer_e2e` run unchanged (the snapshot
watermark under concurrent writers, SIGKILL of the host mid-stream), and
writes made by a process with no middleware at all (raw SQL, a trigger,
``INSERT ... SELECT``, an upsert, ``ON DELETE CASCADE``) are mirrored
exactly with the periodic resync off.
"""

import fixtures
import sqlalchemy as sa

from oslo_publish import outbox
from tests import base
from tests.functional import test_consumer_e2e as e2e
from tests import private_mariadb


class _BinlogHost(object):

    HOST_BACKEND = 'mysql'

    def host_database(self):
        return self.useFixture(private_mariadb.DatabaseFixture())

    def setUpConsumerSide(self, state_backend, **consumer_options):
        super().setUpConsumerSide(state_backend, **consumer_options)
        self.useFixture(fixtures.EnvironmentVariable(
            'CONSUMER_HOST_CAPTURE', 'logical'))


class TestBinlogFlows(_BinlogHost, e2e._Flows, base.TestCase):
    STATE_BACKEND = 'sqlite'


class TestBinlogDurability(_BinlogHost, e2e._Durability, base.TestCase):
    STATE_BACKEND = 'postgresql'


class TestBinlogBypassingWrites(_BinlogHost, e2e._Base, base.TestCase):
    """Writes no session saw are mirrored exactly (no periodic resync)."""

    STATE_BACKEND = 'sqlite'

    def test_writes_without_middleware_are_mirrored(self):
        self.conf.set_override('resync_interval', 0.0, 'consumer')
        self.host.command('preload', rows=20)
        self.raw(
            'ALTER TABLE pairs ADD CONSTRAINT pairs_item FOREIGN KEY (a) '
            'REFERENCES items (id) ON DELETE CASCADE',
            'CREATE TRIGGER items_renamed AFTER UPDATE ON items '
            'FOR EACH ROW INSERT INTO pings (id, ts) VALUES (NEW.id, 1.5) '
            'ON DUPLICATE KEY UPDATE ts = ts + 1')
        consumer = self.consumer()
        self.assertTrue(consumer.wait_synced(60))
        self.assertConverges(consumer)
        # The DDL above is in the binlog before the consumer's snapshot.
        invalidated = self.resyncs(consumer, 'invalidate')
        # Raw SQL, and a trigger writing another published table.
        self.raw("UPDATE items SET name = 'raw' WHERE id IN (3, 4)")
        self.raw("INSERT INTO pairs (a, b, v) VALUES (5, 'x', 1), "
                 "(5, 'y', 2), (6, 'z', 3)")
        # INSERT ... SELECT and an upsert (both invalidate with session
        # capture; exact rows here).
        self.raw("INSERT INTO items (id, name, n, price) SELECT id + 1000, "
                 "CONCAT('copy-', name), n, price FROM items WHERE id < 10")
        self.raw("INSERT INTO items (id, name, n) VALUES (7, 'up', 70), "
                 "(2000, 'new', 1) ON DUPLICATE KEY UPDATE "
                 "name = VALUES(name), n = VALUES(n)")
        self.settle()
        self.assertConverges(consumer)
        view = consumer.view()
        self.assertEqual('raw', view.get('items', (3,))['name'])
        self.assertEqual(1.5, view.get('pings', (4,))['ts'])
        self.assertEqual('copy-raw', view.get('items', (1003,))['name'])
        self.assertEqual('up', view.get('items', (7,))['name'])
        self.wait_caught_up(consumer)
        # Applied as deltas: one initial sync, nothing else.
        self.assertEqual(1, self.resyncs(consumer, 'initial'))
        for cause in ('periodic', 'gap'):
            self.assertEqual(0, self.resyncs(consumer, cause), cause)
        self.assertEqual(invalidated, self.resyncs(consumer, 'invalidate'))
        # A cascade: the binlog carries the parent's row only, so the
        # child table is invalidated and re-read (counted, exact).
        self.raw('DELETE FROM items WHERE id = 5')
        self.settle()
        self.assertConverges(consumer)
        view = consumer.view()
        self.assertIsNone(view.get('items', (5,)))
        self.assertIsNone(view.get('pairs', (5, 'x')))
        self.assertEqual({'a': 6, 'b': 'z', 'v': 3},
                         dict(view.get('pairs', (6, 'z'))))
        self.wait_caught_up(consumer)
        self.assertEqual(invalidated + 1,
                         self.resyncs(consumer, 'invalidate'))
        for cause in ('periodic', 'gap'):
            self.assertEqual(0, self.resyncs(consumer, cause), cause)


class TestBinlogFaults(_BinlogHost, e2e._Base, base.TestCase):
    """The host killed mid large transaction; the binlog purged."""

    STATE_BACKEND = 'sqlite'

    def restart_host(self):
        self.host = self.useFixture(e2e.HostProcess(
            self.host_db.url, self.transport, self.stream, self.topic))

    def test_sigkill_mid_large_transaction(self):
        self.conf.set_override('resync_interval', 0.0, 'consumer')
        self.host.command('preload', rows=20)
        consumer = self.consumer()
        self.assertTrue(consumer.wait_synced(60))
        self.assertConverges(consumer)
        self.wait_caught_up(consumer)
        before = self.host_last_seq()
        # One transaction of 1000 rows, the host killed while its reader
        # decodes, stages or publishes it.
        self.raw('INSERT INTO pairs (a, b, v) SELECT i.id, CONCAT("r", '
                 'j.seq), j.seq FROM items i JOIN seq_1_to_50 j')
        self.host.proc.kill()
        self.host.proc.wait()
        self.raw("UPDATE items SET name = 'after' WHERE id = 1")
        self.restart_host()
        self.settle()
        self.assertConverges(consumer)
        self.wait_caught_up(consumer)
        # Two transactions, staged and numbered once each: not one
        # more sequence number (a transaction staged twice would be).
        self.assertEqual(before + 2, self.host_last_seq())
        with self.host_db.engine.connect() as conn:
            staged = conn.execute(sa.select(
                outbox.outbox.c.log_position).where(
                outbox.outbox.c.seq > before)).scalars().all()
        self.assertEqual(len(set(staged)), len(staged))
        self.assertEqual(1000, len(consumer.view().rows('pairs')))
        self.assertEqual(1, self.resyncs(consumer, 'initial'))
        for cause in ('periodic', 'gap', 'epoch', 'invalidate'):
            self.assertEqual(0, self.resyncs(consumer, cause), cause)

    def test_binlog_purged_past_the_staged_position(self):
        self.conf.set_override('resync_interval', 0.0, 'consumer')
        self.host.command('preload', rows=20)
        consumer = self.consumer()
        self.assertTrue(consumer.wait_synced(60))
        self.assertConverges(consumer)
        self.host.command('quit')
        self.host.proc.wait(30)
        admin = sa.create_engine(self.host_db.server.url)
        self.addCleanup(admin.dispose)
        with admin.connect() as conn:
            conn.exec_driver_sql('FLUSH BINARY LOGS')
            # Written while the host is down, and then purged.
            self.raw("UPDATE items SET name = 'lost' WHERE id = 2")
            conn.exec_driver_sql('FLUSH BINARY LOGS')
            last = conn.exec_driver_sql('SHOW BINARY LOGS').fetchall()[-1]

            def purged():
                conn.exec_driver_sql("PURGE BINARY LOGS TO '%s'" % last[0])
                return [r[0] for r in conn.exec_driver_sql(
                    'SHOW BINARY LOGS')] == [last[0]]
            base.wait_for(purged, 30, interval=0.1,
                          message='the binlog was not purged')
        self.restart_host()
        self.raw("UPDATE items SET name = 'later' WHERE id = 3")
        self.settle()
        # Never a silent loss: a new epoch, a counted resync.
        base.wait_for(lambda: self.resyncs(consumer, 'epoch') >= 1, 60,
                      message='no epoch resync')
        self.assertConverges(consumer)
        view = consumer.view()
        self.assertEqual('lost', view.get('items', (2,))['name'])
        self.assertEqual('later', view.get('items', (3,))['name'])
