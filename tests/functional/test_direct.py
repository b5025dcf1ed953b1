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

"""Direct delivery: committed deltas are queued and published in order."""

import threading
import uuid

import oslo_messaging
import sqlalchemy as sa
from sqlalchemy import orm

import oslo_publish
from oslo_publish import direct
from oslo_publish import relay
from oslo_publish import wire
from tests import base
from tests.functional import delivery


class _DirectTests(delivery.RelayTestMixin):

    def make_sink(self, engine=None, transport=None, start=True):
        sink = direct.DirectSink(self.conf, engine or self.engine,
                                 self.stream, {}, transport or self.transport,
                                 self.metrics)
        if start:
            sink.start()
            self.addCleanup(sink.stop)
        return sink

    def commit(self, sink, engine=None, item=1, rollback=False):
        """One session transaction handed to ``sink``; return its txid."""
        txid = uuid.uuid4().hex
        with orm.Session(engine or self.engine) as session:
            session.execute(sa.text('SELECT 1'))
            sink.stage(session, txid, relay.utcnow(),
                       [delivery.item_change(item, 'n%d' % item)],
                       {'items': delivery.ITEMS_HEADER})
            if rollback:
                session.rollback()
                sink.discarded(session)
            else:
                session.commit()
            sink.committed(session)
        return txid

    def test_committed_transactions_published_in_order(self):
        """Committed transactions get seqs 1..n in commit order."""
        sink = self.make_sink()
        txids = [self.commit(sink, item=n) for n in range(5)]
        self.assertEqual([1, 2, 3, 4, 5], self.receiver.wait_seqs(5))
        got = {tx['seq']: tx['txid'] for tx in self.receiver.transactions()}
        self.assertEqual(txids, [got[n] for n in range(1, 6)])
        for message in self.receiver.deltas():
            wire.validate(message)
        base.wait_for(lambda: delivery.last_seq(self.engine, self.stream)
                      == 5)

    def test_rolled_back_transaction_publishes_nothing(self):
        """A discarded transaction is never queued."""
        sink = self.make_sink(start=False)
        self.commit(sink, rollback=True)
        self.assertEqual(0, sink.pending())
        self.commit(sink)
        self.assertEqual(1, sink.pending())

    def test_full_queue_drops_and_counts(self):
        """Transactions finding the queue full are dropped and counted."""
        self.conf.set_override('direct_queue_size', 2, 'oslo_publish')
        sink = self.make_sink(start=False)
        for n in range(5):
            self.commit(sink, item=n)
        self.assertEqual(3, self.metric('oslo_publish_direct_dropped_total'))
        sink.start()
        self.addCleanup(sink.stop)
        self.assertEqual([1, 2], self.receiver.wait_seqs(2))

    def test_stop_counts_what_the_broker_never_took(self):
        """Stopping with a dead broker drops the queue, counted."""
        dead = oslo_messaging.get_notification_transport(
            self.conf, url=delivery.DEAD_BROKER)
        self.addCleanup(dead.cleanup)
        sink = self.make_sink(transport=dead, start=False)
        self.commit(sink)
        self.commit(sink)
        sink.start()
        base.wait_for(lambda: self.metric(
            'oslo_publish_broker_retries_total') >= 1, 20)
        sink.stop(timeout=0.5)
        self.assertEqual(2, self.metric('oslo_publish_direct_dropped_total'))
        self.assertEqual(0, delivery.last_seq(self.engine, self.stream))

    def test_two_processes_share_one_sequence(self):
        """Two sinks on separate engines give one gapless sequence."""
        other = sa.create_engine(self.db.url)
        self.addCleanup(other.dispose)
        sinks = [(self.make_sink(), self.engine),
                 (self.make_sink(engine=other), other)]
        txids = []

        def work(sink, engine):
            for n in range(10):
                txids.append(self.commit(sink, engine, item=n))

        threads = [threading.Thread(target=work, args=pair)
                   for pair in sinks]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.receiver.wait_seqs(20)
        got = self.receiver.transactions()
        delivery.assert_gapless(self, got, 20)
        self.assertEqual(sorted(txids), sorted(tx['txid'] for tx in got))

    def test_install_direct_mode_publishes_captured_rows(self):
        """install(delivery=direct) publishes committed rows, not rollbacks."""
        items = sa.Table('items', sa.MetaData(),
                         sa.Column('id', sa.Integer, primary_key=True,
                                   autoincrement=False),
                         sa.Column('name', sa.String(32)))
        items.metadata.create_all(self.engine)
        for name, value in (('tables', ['items']), ('stream', self.stream),
                            ('delivery', 'direct'),
                            ('snapshot_server', False)):
            self.conf.set_override(name, value, 'oslo_publish')
        maker = orm.sessionmaker(bind=self.engine)
        handle = oslo_publish.install(self.conf, maker,
                                      metadata=items.metadata,
                                      transport=self.transport,
                                      metrics=self.metrics)
        self.addCleanup(handle.stop)
        with maker() as session:
            session.execute(items.insert().values(id=1, name='kept'))
            session.commit()
            session.execute(items.insert().values(id=2, name='gone'))
            session.rollback()
            session.execute(items.update().where(items.c.id == 1)
                            .values(name='renamed'))
            session.commit()
        self.assertEqual([1, 2], self.receiver.wait_seqs(2))
        changes = [c for tx in sorted(self.receiver.transactions(),
                                      key=lambda t: t['seq'])
                   for c in tx['changes']]
        self.assertEqual([('insert', [1]), ('update', [1])],
                         [(c['op'], c['key']) for c in changes])
        self.assertEqual('renamed', changes[1]['after']['name'])


class TestDirectSQLite(_DirectTests, base.BackendTestCase):
    BACKEND = 'sqlite'


class TestDirectPostgreSQL(_DirectTests, base.BackendTestCase):
    BACKEND = 'postgresql'


class TestDirectMySQL(_DirectTests, base.BackendTestCase):
    BACKEND = 'mysql'
