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

"""A consumer on a three-node RabbitMQ cluster with quorum queues.

Real PostgreSQL host with its in-process relay, real consumer with a
PostgreSQL state store, a cluster started by the test
(:class:`tests.rabbit_cluster.RabbitClusterFixture`). See
``doc/source/operations.rst`` "A RabbitMQ cluster" for the settings.
"""

import argparse
import threading
import time

import sqlalchemy as sa
from sqlalchemy import orm

from consumer import listener
from consumer import service
from consumer import state as state_mod
import oslo_publish
from oslo_publish import migration
from oslo_publish import outbox
from tests import base
from tests.functional import consumer_host
from tests import rabbit_cluster

RABBIT = 'oslo_messaging_rabbit'


class RabbitClusterFixtureTest(base.TestCase):
    """The cluster fixture and the quorum-queue consumer on it."""

    def setUp(self):
        super().setUp()
        self.started = time.monotonic()
        self.cluster = self.useFixture(rabbit_cluster.RabbitClusterFixture())
        self.host_db = self.useFixture(base.DatabaseFixture('postgresql'))
        self.state_db = self.useFixture(base.DatabaseFixture('postgresql'))
        # base.TransportFixture parses one host; the cluster URL has three.
        self.exchange = base.unique_name('opx')
        self.topic = base.unique_name('opt')
        self.conf.set_override('transport_url', self.cluster.url)
        self.conf.set_override('control_exchange', self.exchange)
        self.stream = base.unique_name('st')
        self.pool = base.unique_name('pool')

    def _host(self):
        engine = sa.create_engine(self.host_db.url)
        self.addCleanup(engine.dispose)
        consumer_host.Base.metadata.create_all(engine)
        migration.upgrade(engine)
        conf = consumer_host._conf(argparse.Namespace(
            transport_url=self.cluster.url, exchange=self.exchange,
            stream=self.stream, topic=self.topic, page_size=50,
            signing_key=None))
        conf.set_override('rabbit_quorum_queue', True, RABBIT)
        conf.set_override('retry_max_backoff', 1.0, 'oslo_publish')
        maker = orm.sessionmaker(bind=engine)
        handle = oslo_publish.install(conf, maker,
                                      metadata=consumer_host.Base.metadata)
        self.addCleanup(handle.stop)
        return engine, maker, handle

    def _consumer(self):
        listener.prepare_transport_conf(self.conf)
        for name, value in (('amqp_durable_queues', True),
                            ('rabbit_quorum_queue', True),
                            ('rabbit_interval_max', 2)):
            self.conf.set_override(name, value, RABBIT)
        for name, value in (('streams', [self.stream]),
                            ('topics', [self.topic]),
                            ('pool', self.pool),
                            ('gap_timeout', 3.0),
                            ('inactivity_timeout', 15.0),
                            ('resync_backoff_min', 0.05),
                            ('resync_backoff_max', 0.5),
                            ('snapshot_timeout', 30.0)):
            self.conf.set_override(name, value, 'consumer')
        self.conf.set_override('connection', self.state_db.url,
                               'consumer_database')
        consumer = service.Consumer(self.conf)
        consumer.start()
        self.addCleanup(lambda: consumer._stopping.is_set()
                        or consumer.stop())
        return consumer

    def _state_rows(self):
        store = state_mod.StateStore.from_url(self.state_db.url)
        try:
            return {t: dict(store.load_rows(self.stream, t))
                    for t in consumer_host.TABLES}
        finally:
            store.close()

    @staticmethod
    def _cache_rows(consumer):
        view = consumer.view()
        return {t: {k: dict(r) for k, r in view.rows(t).items()}
                for t in consumer_host.TABLES}

    @staticmethod
    def _last_seq(engine, stream):
        with engine.connect() as conn:
            return conn.execute(sa.select(outbox.streams.c.last_seq).where(
                outbox.streams.c.stream == stream)).scalar() or 0

    def test_losing_queue_leader_then_another_node_loses_nothing(self):
        """Losing the queue leader, then another node, loses nothing.

        Writers commit throughout; the consumer keeps applying while each
        node is down, and the mirror converges without a gap resync.
        """
        engine, maker, handle = self._host()
        workload = consumer_host.Workload(maker)
        workload.preload(50)
        consumer = self._consumer()
        self.assertTrue(consumer.wait_synced(120), 'consumer never synced')
        leader = base.wait_for(
            lambda: self.cluster.queue_leader(self.pool), 60,
            message='consumer queue %s has no quorum leader' % self.pool)

        stop, errors = threading.Event(), []

        def write(first):
            seed = first
            while not stop.is_set():
                seed += 2
                try:
                    workload._writer(1, seed)
                except Exception as exc:  # noqa: asserted below
                    errors.append(exc)
                    return
                stop.wait(0.02)

        writers = [threading.Thread(target=write, args=(i,))
                   for i in range(2)]
        for thread in writers:
            thread.start()
        self.addCleanup(lambda: [t.join() for t in writers])
        self.addCleanup(stop.set)

        def progress(nodes_down):
            # Writers commit and the consumer applies past this point
            # while ``nodes_down`` is out of service.
            target = self._last_seq(engine, self.stream) + 20
            base.wait_for(
                lambda: consumer.status()[0]['applied_seq'] >= target, 120,
                message='consumer stuck below seq %d with %s down'
                % (target, [n.name for n in nodes_down]))

        progress([])
        self.addCleanup(leader.start_app)
        leader.stop_app()
        progress([leader])
        leader.start_app()
        second = base.wait_for(
            lambda: self.cluster.queue_leader(self.pool), 60,
            message='no leader after %s came back' % leader.name)
        if second is leader:
            second = next(n for n in self.cluster.nodes if n is not leader)
        self.addCleanup(second.start_app)
        second.stop_app()
        progress([second])
        second.start_app()
        stop.set()
        for thread in writers:
            thread.join()
        self.assertEqual([], errors)
        self.assertTrue(handle.relay.wait_drained(60), 'relay not drained')
        expected = base.table_rows(engine,
                                   consumer_host.Base.metadata.sorted_tables)
        base.wait_for(lambda: self._cache_rows(consumer) == expected, 60,
                      message='cache did not converge')
        base.wait_for(lambda: self._state_rows() == expected, 60,
                      message='state store did not converge')
        last = self._last_seq(engine, self.stream)
        base.wait_for(lambda: consumer.status()[0]['applied_seq'] == last,
                      60, message='consumer did not reach seq %d' % last)
        self.assertGreater(workload.committed, 60)
        resyncs = consumer.metrics.value('consumer_resyncs_total',
                                         stream=self.stream, cause='initial')
        self.assertEqual(1, resyncs)
        self.assertEqual(
            0, consumer.metrics.value('consumer_resyncs_total',
                                      stream=self.stream, cause='gap'),
            'a delta was lost and repaired by a resync')
        self.assertLess(time.monotonic() - self.started, 300)
