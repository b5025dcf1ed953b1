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

"""An upsert-heavy workload converges with the periodic resync off.

Upserts cannot be captured exactly: capture turns each into a table
invalidation in its transaction's delta, and the consumer re-reads just
that table (cause ``invalidate``). With ``[consumer] resync_interval`` at
0 nothing else repairs the consumer, so convergence of its cache and
state store to the host tables proves the invalidation path alone is
enough. The host (``oslo_publish.install``, relay and snapshot server) runs
in this process on the models of :mod:`tests.functional.consumer_host`;
the broker is the real RabbitMQ.
"""

import argparse
import decimal
import random
import threading

from sqlalchemy.dialects import mysql
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite
from sqlalchemy import exc as sa_exc
from sqlalchemy import orm

import oslo_publish
from oslo_publish import migration
from tests import base
from tests.functional import consumer_host
from tests.functional import test_consumer_e2e as e2e

Item = consumer_host.Item
TRANSACTIONS = 200
KEYS = 60


class _UpsertConvergence(e2e._Base):

    WRITERS = 3

    def setUp(self):
        # e2e._Base.setUp starts a host process; this host is in process.
        base.TestCase.setUp(self)
        self.setUpConsumerSide('sqlite', resync_interval=0.0)
        engine = self.host_db.engine
        if self.HOST_BACKEND == 'sqlite':
            # The snapshot server reads SQLite only in WAL mode.
            with engine.connect() as conn:
                conn.exec_driver_sql('PRAGMA journal_mode=WAL')
        consumer_host.Base.metadata.create_all(engine)
        migration.upgrade(engine)
        host_conf = consumer_host._conf(argparse.Namespace(
            transport_url=self.transport.url,
            exchange=self.transport.exchange, stream=self.stream,
            topic=self.topic, page_size=50, signing_key=None))
        self.maker = orm.sessionmaker(bind=engine)
        self.handle = oslo_publish.install(
            host_conf, self.maker, metadata=consumer_host.Base.metadata)
        self.addCleanup(self.handle.stop)
        self._lock = threading.Lock()
        self.committed = {'upsert': 0, 'insert': 0, 'update': 0,
                          'delete': 0}
        self.failed = 0

    # ------------------------------------------------------------ workload

    def upsert(self, rows):
        table = Item.__table__
        if self.HOST_BACKEND in ('postgresql', 'sqlite'):
            dialect = (postgresql if self.HOST_BACKEND == 'postgresql'
                       else sqlite)
            stmt = dialect.insert(table).values(rows)
            return stmt.on_conflict_do_update(
                index_elements=['id'],
                set_={'name': stmt.excluded.name, 'n': stmt.excluded.n,
                      'price': stmt.excluded.price})
        stmt = mysql.insert(table).values(rows)
        return stmt.on_duplicate_key_update(
            name=stmt.inserted.name, n=stmt.inserted.n,
            price=stmt.inserted.price)

    def _one(self, session, rng, tx):
        kind = rng.choices(['upsert', 'insert', 'update', 'delete'],
                           [6, 2, 1, 1])[0]
        if kind == 'upsert':
            ids = sorted(rng.sample(range(1, KEYS + 1), rng.randint(1, 4)))
            session.execute(self.upsert([
                {'id': i, 'name': 'u%d-%d' % (tx, i), 'n': tx,
                 'price': decimal.Decimal('%d.50' % tx)} for i in ids]))
        elif kind == 'insert':
            ident = rng.randint(1, KEYS)
            if session.get(Item, ident) is not None:
                return None
            session.add(Item(id=ident, name='i%d' % tx, n=tx))
        else:
            item = session.get(Item, rng.randint(1, KEYS))
            if item is None:
                return None
            if kind == 'update':
                item.name = 'o%d' % tx
                item.n = tx
            else:
                session.delete(item)
        return kind

    def _writer(self, seed, count):
        rng = random.Random(seed)
        for tx in range(seed * 1000, seed * 1000 + count):
            try:
                with self.maker() as session:
                    kind = self._one(session, rng, tx)
                    session.commit()
            except (sa_exc.IntegrityError, sa_exc.OperationalError):
                # A concurrent insert of the same key, or a deadlock.
                with self._lock:
                    self.failed += 1
                continue
            if kind is not None:
                with self._lock:
                    self.committed[kind] += 1

    def run_workload(self):
        threads = [threading.Thread(
            target=self._writer,
            args=(n + 1, TRANSACTIONS // self.WRITERS)) for n in
            range(self.WRITERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
            self.assertFalse(thread.is_alive(), 'writer did not finish')

    # --------------------------------------------------------------- tests

    def test_upsert_heavy_workload_converges_without_periodic_resync(self):
        """Upserts mixed with ORM writes converge by invalidations alone."""
        self.assertEqual(0.0, self.conf.consumer.resync_interval)
        with self.maker() as session:
            session.add_all(Item(id=i, name='p%d' % i, n=0)
                            for i in range(1, KEYS // 2 + 1))
            session.commit()
        consumer = self.consumer()
        self.assertTrue(consumer.wait_synced(60))
        self.run_workload()
        self.assertGreater(self.committed['upsert'], 50, self.committed)
        self.assertTrue(self.handle.relay.wait_drained(60))
        self.assertConverges(consumer, timeout=40)
        self.assertEqual(0, self.resyncs(consumer, 'periodic'))
        self.assertGreater(self.resyncs(consumer, 'invalidate'), 0)
        self.assertEqual(1, self.resyncs(consumer, 'initial'))
        for cause in ('gap', 'heartbeat', 'inactivity', 'epoch'):
            self.assertEqual(0, self.resyncs(consumer, cause), cause)


class TestUpsertConvergencePostgreSQL(_UpsertConvergence, base.TestCase):
    HOST_BACKEND = 'postgresql'


class TestUpsertConvergenceMariaDB(_UpsertConvergence, base.TestCase):
    HOST_BACKEND = 'mysql'


class TestUpsertConvergenceSQLite(_UpsertConvergence, base.TestCase):
    HOST_BACKEND = 'sqlite'
    WRITERS = 1
