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

"""Helpers of the host delivery tests: a bus receiver and outbox writes."""

import datetime
import json
import socket
import threading
import uuid

import fixtures
import kombu
import oslo_messaging
import sqlalchemy as sa

from oslo_publish import metrics
from oslo_publish import outbox
from oslo_publish import publisher
from oslo_publish import relay
from oslo_publish import wire
from tests import base

DEAD_BROKER = 'rabbit://guest:guest@127.0.0.1:1/'


def amqp_url(url):
    return url.replace('rabbit://', 'amqp://', 1)


def wait_for_broker(timeout=60.0):
    """Wait while RabbitMQ is briefly down (test_faults stops it ~10 s)."""
    from sqlalchemy.engine import url as sa_url
    parsed = sa_url.make_url(base.TRANSPORT_URL.replace('rabbit://', 'x://'))

    def reachable():
        try:
            socket.create_connection((parsed.host or '127.0.0.1',
                                      parsed.port or 5672), 1.0).close()
        except OSError:
            return False
        return True
    try:
        base.wait_for(reachable, timeout, interval=0.25)
    except AssertionError:
        pass  # TransportFixture then fails the test, naming the service


def durable_broker(conf):
    """Durable exchange and queues, quick reconnects.

    The broker is shared and one test stops it for a while: with durable
    entities the other tests' queues and messages survive that.
    """
    from oslo_messaging._drivers import amqp
    from oslo_messaging._drivers import impl_rabbit
    group = 'oslo_messaging_rabbit'
    conf.register_opts(impl_rabbit.rabbit_opts, group=group)
    conf.register_opts(amqp.amqp_opts, group=group)
    conf.set_override('amqp_durable_queues', True, group)
    conf.set_override('rabbit_interval_max', 2, group)


def delete_queues(url, names, exchange=None):
    """Best-effort removal of test queues (and exchange) from the broker."""
    try:
        with kombu.Connection(amqp_url(url)) as conn:
            channel = conn.channel()
            for name in names:
                channel.queue_delete(name)
            if exchange:
                channel.exchange_delete(exchange)
    except Exception:  # noqa: broad - best-effort broker cleanup
        pass


class Receiver(fixtures.Fixture):
    """A notification listener with a pool of its own on the test topic.

    ``messages`` collects ``(event_type, payload)`` in arrival order.
    Both its queue and the driver's default ``<topic>.info`` queue are
    deleted at cleanup.
    """

    def __init__(self, transport, transport_fixture):
        super().__init__()
        self.transport = transport
        self.tf = transport_fixture
        self.messages = []
        self.changed = threading.Condition()

    def _setUp(self):
        receiver = self

        class Endpoint(object):
            def info(self, ctxt, publisher_id, event_type, payload, md):
                with receiver.changed:
                    receiver.messages.append((event_type, payload))
                    receiver.changed.notify_all()

        self.pool = base.unique_name('pool')
        self.listener = oslo_messaging.get_notification_listener(
            self.transport, [oslo_messaging.Target(topic=self.tf.topic)],
            [Endpoint()], executor='threading', pool=self.pool)
        self.listener.start()
        self.addCleanup(self._delete_queues)
        self.addCleanup(self.listener.wait)
        self.addCleanup(self.listener.stop)

    def _delete_queues(self):
        delete_queues(self.tf.url, [self.pool, '%s.info' % self.tf.topic],
                      self.tf.exchange)

    def deltas(self):
        return [p for e, p in list(self.messages) if e == wire.EVENT_DELTA]

    def heartbeats(self):
        return [p for e, p in list(self.messages)
                if e == wire.EVENT_HEARTBEAT]

    def transactions(self):
        """Every transaction received, in arrival order."""
        return [tx for message in self.deltas()
                for tx in message['transactions']]

    def seqs(self):
        return [tx['seq'] for tx in self.transactions()]

    def wait_seqs(self, count, timeout=30.0):
        """Wait until ``count`` distinct seqs arrived; return them sorted."""
        base.wait_for(lambda: len(set(self.seqs())) >= count, timeout,
                      message='expected %d seqs, got %s'
                      % (count, sorted(set(self.seqs()))))
        return sorted(set(self.seqs()))


ITEMS_HEADER = {'pk': ['id'], 'version': '0123456789abcdef'}


def item_change(item_id, name, op=wire.INSERT):
    change = {'table': 'items', 'op': op, 'key': [item_id]}
    if op != wire.DELETE:
        change['after'] = {'id': item_id, 'name': name}
    if op != wire.INSERT:
        change['before'] = {'id': item_id, 'name': name}
    if op == wire.UPDATE:
        change['changed'] = ['name']
    return change


def outbox_row(stream, changes, tables=None):
    return {'stream': stream, 'txid': uuid.uuid4().hex,
            'committed_at': datetime.datetime.now(
                datetime.timezone.utc).replace(tzinfo=None),
            'payload': json.dumps({'changes': changes,
                                   'tables': tables or
                                   {'items': ITEMS_HEADER}})}


def write_entries(engine, stream, count, start=1, size=0):
    """Commit ``count`` outbox entries (one insert each); return txids."""
    txids = []
    for n in range(start, start + count):
        row = outbox_row(stream, [item_change(n, 'x' * size or 'n%d' % n)])
        with engine.begin() as conn:
            conn.execute(outbox.outbox.insert().values(**row))
        txids.append(row['txid'])
    return txids


def pending(engine, stream):
    """Entries the broker has not confirmed yet (numbered or not)."""
    with engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count()).select_from(outbox.outbox)
            .where(outbox.outbox.c.stream == stream)
            .where(outbox.outbox.c.published_at.is_(None))).scalar()


def outbox_rows(engine, stream):
    o = outbox.outbox
    with engine.connect() as conn:
        return conn.execute(sa.select(o.c.txid, o.c.seq, o.c.published_at)
                            .where(o.c.stream == stream)
                            .order_by(o.c.id)).all()


def last_seq(engine, stream):
    s = outbox.streams
    with engine.connect() as conn:
        return conn.execute(sa.select(s.c.last_seq)
                            .where(s.c.stream == stream)).scalar()


def assert_gapless(test, transactions, count):
    """Seqs are 1..count, and each seq names one transaction only."""
    by_seq = {}
    for tx in transactions:
        by_seq.setdefault(tx['seq'], set()).add(tx['txid'])
    test.assertEqual(list(range(1, count + 1)), sorted(by_seq))
    test.assertEqual([], [s for s, t in by_seq.items() if len(t) != 1])
    txids = [t.pop() for t in by_seq.values()]
    test.assertEqual(len(txids), len(set(txids)))


class RelayDied(Exception):
    """The injected death of a relay."""


class DieBeforeMark(fixtures.Fixture):
    """The next ``Relay._mark`` raises: the broker confirmed, then death.

    Later calls mark as usual (a relay started afterwards is healthy).
    """

    def _setUp(self):
        self.deaths = 0
        real = relay.Relay._mark
        fixture = self

        def mark(self, held, confirmed, *args, **kwargs):
            if fixture.deaths == 0:
                fixture.deaths += 1
                raise RelayDied('relay died after the broker confirmed')
            return real(self, held, confirmed, *args, **kwargs)
        self.useFixture(fixtures.MonkeyPatch(
            'oslo_publish.relay.Relay._mark', mark))


def insert_entry(engine, stream, entry_id, name):
    """Commit one outbox entry with an explicit id; return its txid."""
    row = outbox_row(stream, [item_change(entry_id, name)])
    with engine.begin() as conn:
        conn.execute(outbox.outbox.insert().values(id=entry_id, **row))
    return row['txid']


def consume(transactions):
    """What a consumer applies: in seq order, seq <= applied dropped.

    :returns: the txids applied, in order.
    """
    applied, waiting, out = 0, {}, []
    for tx in transactions:
        if tx['seq'] <= applied:
            continue
        waiting.setdefault(tx['seq'], tx)
        while applied + 1 in waiting:
            applied += 1
            out.append(waiting.pop(applied)['txid'])
    return out


class RelayTestMixin(object):
    """Broker, receiver, outbox tables and a stream for a relay test."""

    def setUp(self):
        super().setUp()
        wait_for_broker()
        self.tf = self.useFixture(base.TransportFixture(self.conf))
        for name, value in (('topics', [self.tf.topic]),
                            ('heartbeat_interval', 60.0),
                            ('relay_poll_interval', 0.05),
                            ('retry_max_backoff', 0.3),
                            ('batch_size', 3)):
            self.conf.set_override(name, value, 'oslo_publish')
        durable_broker(self.conf)
        self.transport = oslo_messaging.get_notification_transport(
            self.conf)
        self.addCleanup(self.transport.cleanup)
        self.receiver = self.useFixture(
            Receiver(self.transport, self.tf))
        if self.engine.dialect.name == 'sqlite':
            with self.engine.connect() as conn:
                conn.exec_driver_sql('PRAGMA journal_mode=WAL')
        outbox.metadata.create_all(self.engine)
        self.stream = base.unique_name('s')
        self.metrics = metrics.HostMetrics()

    def make_relay(self, engine=None, transport=None, start=False):
        pub = publisher.Publisher(self.conf, transport or self.transport,
                                  self.stream, self.metrics)
        r = relay.Relay(self.conf, engine or self.engine, self.stream, {},
                        pub, self.metrics)
        if start:
            r.start()
            self.addCleanup(r.stop)
        return r

    def metric(self, name):
        return self.metrics.value(name, stream=self.stream)
