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


"""Security of the stream, end to end on a real database and RabbitMQ.

The host (``oslo_publish.install`` with the in-process relay and snapshot
server) and a consumer service run in this process on one private
exchange of the shared broker; a raw queue bound to that exchange with
``#`` receives a copy of every byte published there (deltas, heartbeats
and snapshot RPC requests); snapshot replies are read through an RPC
client. What must hold:

* a column in ``exclude_columns`` never leaves the host: its marker value
  is in no published byte, no snapshot reply, no mirrored row, no log;
* the signing key is never logged (logs captured at DEBUG);
* a replayed, validly signed message (its raw bytes re-published)
  changes nothing; a stream from a publisher that is not configured is
  rejected and counted; a consumer with another key accepts nothing;
* the snapshot endpoint serves only allow-listed tables and published
  columns; anything else is refused with a clear error and logged.
"""

import json
import logging
import uuid

import fixtures
import kombu
import oslo_messaging
import sqlalchemy as sa
from sqlalchemy import orm

import oslo_publish
from consumer import listener
from consumer import service
from consumer import state as state_mod
from oslo_publish import exceptions
from oslo_publish import publisher as publisher_mod
from oslo_publish import snapshot
from oslo_publish import snapshot_auth
from oslo_publish import wire
from tests import base
from tests.functional import delivery
from tests.functional import test_snapshot_containment as containment

KEY = 'security-signing-key-%s' % uuid.uuid4().hex[:8]

Base = orm.declarative_base()


class Account(Base):
    __tablename__ = 'accounts'
    __table_args__ = {'mysql_engine': 'InnoDB'}
    id = sa.Column(sa.Integer, primary_key=True, autoincrement=False)
    name = sa.Column(sa.String(64), nullable=False)
    password = sa.Column(sa.String(64))
    note = sa.Column(sa.String(64))


class Secret(Base):
    __tablename__ = 'secrets'
    __table_args__ = {'mysql_engine': 'InnoDB'}
    id = sa.Column(sa.Integer, primary_key=True, autoincrement=False)
    value = sa.Column(sa.String(64))


class _SecurityTests(object):

    CONSUMER_KEY = KEY

    def setUp(self):
        super().setUp()
        self.marker = 'MARKER%s' % uuid.uuid4().hex
        self.logs = self.useFixture(fixtures.FakeLogger(level='DEBUG'))
        Base.metadata.create_all(self.engine)
        from oslo_publish import migration
        migration.upgrade(self.engine)
        with self.engine.begin() as conn:
            conn.execute(Account.__table__.insert(), [
                {'id': i, 'name': 'pre%d' % i, 'note': 'n',
                 'password': self.marker + '-pre'} for i in range(1, 6)])
            conn.execute(Secret.__table__.insert().values(
                id=1, value=self.marker))
        self.tf = self.useFixture(base.TransportFixture(self.conf))
        self.stream = base.unique_name('sec')
        self.pool = base.unique_name('secpool')
        listener.prepare_transport_conf(self.conf)
        # Durable on every side, as the raw spy queue's exchange below.
        self.conf.set_override('amqp_durable_queues', True,
                               'oslo_messaging_rabbit')
        snapshot.ensure_rpc_opts(self.conf)
        for name, value in (('tables', ['accounts']), ('stream', self.stream),
                            ('exclude_columns', ['accounts.password']),
                            ('topics', [self.tf.topic]),
                            ('heartbeat_interval', 0.2),
                            ('relay_poll_interval', 0.05),
                            ('snapshot_page_size', 2),
                            ('signing_key', KEY)):
            self.conf.set_override(name, value, 'oslo_publish')
        for name, value in (('streams', [self.stream]),
                            ('topics', [self.tf.topic]),
                            ('pool', self.pool), ('gap_timeout', 0.5),
                            ('resync_backoff_min', 0.05),
                            ('resync_backoff_max', 0.5),
                            ('snapshot_timeout', 10.0),
                            ('signing_key', self.CONSUMER_KEY)):
            self.conf.set_override(name, value, 'consumer')
        self.conf.set_override('connection', 'sqlite:///%s/state.sqlite'
                               % self.tmpdir, 'consumer_database')
        self.raw_queue = base.unique_name('raw')
        self.addCleanup(delivery.delete_queues, self.tf.url, [
            self.raw_queue, self.pool, self.tf.topic + '.info'],
            self.tf.exchange)
        self._bind_raw_queue()
        self.maker = orm.sessionmaker(bind=self.engine)
        self.handle = oslo_publish.install(self.conf, self.maker,
                                           metadata=Base.metadata)
        self.addCleanup(self.handle.stop)
        self.addCleanup(delivery.delete_queues, self.tf.url, [
            '%s.%s' % (wire.snapshot_topic(self.stream),
                       self.handle.snapshot_server.name),
            wire.snapshot_topic(self.stream)])

    # ------------------------------------------------------------ helpers

    def _exchange(self):
        return kombu.Exchange(self.tf.exchange, type='topic', durable=True)

    def _bind_raw_queue(self):
        with kombu.Connection(delivery.amqp_url(self.tf.url)) as conn:
            kombu.Queue(self.raw_queue, exchange=self._exchange(),
                        routing_key='#', durable=False,
                        auto_delete=False)(conn.channel()).declare()

    def raw_messages(self):
        """Every message published on the exchange so far: (key, bytes)."""
        out = []
        with kombu.Connection(delivery.amqp_url(self.tf.url)) as conn:
            queue = kombu.Queue(self.raw_queue, exchange=self._exchange(),
                                routing_key='#')(conn.channel())
            while True:
                message = queue.get(no_ack=True)
                if message is None:
                    return out
                body = message.body
                if isinstance(body, str):
                    body = body.encode('utf-8')
                out.append((message.delivery_info['routing_key'], body))

    @staticmethod
    def payload_of(body):
        envelope = json.loads(body)
        inner = envelope.get('oslo.message')
        message = json.loads(inner) if isinstance(inner, str) else envelope
        return message.get('payload'), message

    @staticmethod
    def new_envelope(body):
        """The same message under a new transport message id."""
        envelope = json.loads(body)
        inner = json.loads(envelope['oslo.message'])
        inner['_unique_id'] = uuid.uuid4().hex
        envelope['oslo.message'] = json.dumps(inner)
        return json.dumps(envelope).encode('utf-8')

    def republish(self, routing_key, body):
        with kombu.Connection(delivery.amqp_url(self.tf.url)) as conn:
            producer = kombu.Producer(conn.channel(),
                                      exchange=self._exchange())
            producer.publish(body, routing_key=routing_key,
                             content_type='application/json',
                             content_encoding='utf-8')

    def consumer(self):
        consumer = service.Consumer(self.conf)
        consumer.start()
        self.addCleanup(consumer.stop)
        return consumer

    def host_rows(self):
        with self.engine.connect() as conn:
            return {(r.id,): {'id': r.id, 'name': r.name, 'note': r.note}
                    for r in conn.execute(sa.select(Account.__table__))}

    def cache_rows(self, consumer):
        return {k: dict(v) for k, v in
                consumer.view().rows('accounts').items()}

    def converged(self, consumer):
        base.wait_for(lambda: self.cache_rows(consumer) == self.host_rows(),
                      30, message='consumer did not converge')

    def rpc_client(self):
        transport = oslo_messaging.get_rpc_transport(
            self.conf, allowed_remote_exmods=['oslo_publish.exceptions'])
        self.addCleanup(transport.cleanup)
        return oslo_messaging.get_rpc_client(transport, oslo_messaging.Target(
            topic=wire.snapshot_topic(self.stream),
            namespace=wire.SNAPSHOT_NAMESPACE,
            version=wire.SNAPSHOT_API_VERSION), timeout=30)

    def other_consumer_conf(self, key):
        """A second consumer's configuration: same stream, its own key."""
        conf = self.useFixture(base.ConfFixture()).conf
        conf.set_override('transport_url', self.tf.url)
        conf.set_override('control_exchange', self.tf.exchange)
        listener.prepare_transport_conf(conf)
        conf.set_override('amqp_durable_queues', True,
                          'oslo_messaging_rabbit')
        snapshot.ensure_rpc_opts(conf)
        pool = base.unique_name('otherpool')
        self.addCleanup(delivery.delete_queues, self.tf.url, [pool])
        for name, value in (('streams', [self.stream]),
                            ('topics', [self.tf.topic]),
                            ('pool', pool), ('gap_timeout', 0.5),
                            ('resync_backoff_min', 0.05),
                            ('resync_backoff_max', 0.5),
                            ('snapshot_timeout', 10.0),
                            ('signing_key', key)):
            conf.set_override(name, value, 'consumer')
        conf.set_override('connection', 'sqlite:///%s/other.sqlite'
                          % self.tmpdir, 'consumer_database')
        return conf

    def auth(self, tables, key=KEY):
        """A signed ``auth`` object for ``snapshot_open`` of ``tables``."""
        return snapshot_auth.request_auth(key, self.stream, tables,
                                          uuid.uuid4().hex)

    def write_secrets(self):
        """Inserts, updates, ORM bulk updates and deletes of the secret."""
        m = self.marker
        with self.maker.begin() as session:
            session.add(Account(id=10, name='new', password=m + '-ins',
                                note='a'))
            session.add(Account(id=11, name='new2', password=m + '-ins2'))
        with self.maker.begin() as session:
            account = session.get(Account, 10)
            account.password = m + '-upd'
            account.note = 'b'
            session.get(Account, 1).password = m + '-only'
        with self.maker.begin() as session:
            session.execute(sa.update(Account).where(Account.id < 4).values(
                password=m + '-bulk', note='bulk'))
        with self.maker.begin() as session:
            session.delete(session.get(Account, 11))
            session.execute(sa.delete(Account).where(Account.id == 2))

    def rejected(self, consumer, reason):
        return sum(consumer.metrics.value(
            'consumer_rejected_total', stream=s, reason=reason)
            for s in (self.stream, '-'))

    # -------------------------------------------------------------- tests

    def test_excluded_column_never_leaves_the_host(self):
        """The excluded column's marker is in no byte, reply, row or log."""
        consumer = self.consumer()
        self.assertTrue(consumer.wait_synced(60))
        self.write_secrets()
        self.converged(consumer)
        client = self.rpc_client()
        opened = client.call({}, 'snapshot_open', tables=['accounts'],
                             auth=self.auth(['accounts']))
        replies = [opened]
        page = {'next': None}
        while True:
            page = client.call({}, 'snapshot_page',
                               snapshot_id=opened['snapshot_id'],
                               table='accounts', after=page['next'])
            replies.append(page)
            if page['next'] is None:
                break
        self.assertGreater(len(replies), 3)
        self.assertEqual(['id', 'name', 'note'], [
            c for c, _t in opened['tables']['accounts']['columns']])
        raw = self.raw_messages()
        deltas = [self.payload_of(body)[0] for _key, body in raw
                  if b'"oslo_publish.delta' in body]
        self.assertGreaterEqual(
            sum(len(d['transactions']) for d in deltas), 4)
        for key, body in raw:
            self.assertNotIn(self.marker.encode(), body, key)
            self.assertNotIn(b'password', body, key)
        for reply in replies:
            self.assertNotIn(self.marker, json.dumps(reply))
            self.assertNotIn('password', json.dumps(reply))
        store = state_mod.StateStore(self.conf)
        self.addCleanup(store.close)
        stored = list(store.load_encoded_rows(self.stream, 'accounts'))
        self.assertEqual(len(self.host_rows()), len(stored))
        self.assertNotIn(self.marker, json.dumps(stored))
        for row in self.cache_rows(consumer).values():
            self.assertNotIn('password', row)
        # What a service logs at start-up: its options, secrets masked.
        self.conf.log_opt_values(logging.getLogger('options'),
                                 logging.DEBUG)
        self.assertIn('signing_key', self.logs.output)
        self.assertNotIn(self.marker, self.logs.output)
        self.assertNotIn(KEY, self.logs.output)

    def test_replayed_raw_message_changes_nothing(self):
        """Re-published bytes of a signed, applied delta are rejected."""
        consumer = self.consumer()
        self.assertTrue(consumer.wait_synced(60))
        with self.maker.begin() as session:
            session.add(Account(id=20, name='replay-me'))
        self.converged(consumer)
        with self.maker.begin() as session:
            session.delete(session.get(Account, 20))
        self.converged(consumer)
        raw = [(key, body) for key, body in self.raw_messages()
               if b'"oslo_publish.delta' in body]
        first_key, first_body = raw[0]
        payload, _ = self.payload_of(first_body)
        wire.check_signature(payload, KEY)
        applied = consumer.status()[0]['applied_seq']
        before = self.rejected(consumer, 'replayed')
        # The same bytes (oslo.messaging drops them as a duplicate
        # message id), then the same signed payload in a new envelope.
        self.republish(first_key, first_body)
        self.republish(first_key, self.new_envelope(first_body))
        base.wait_for(lambda: self.rejected(consumer, 'replayed') ==
                      before + 1, 30, message='replay not rejected')
        self.assertNotIn((20,), self.cache_rows(consumer))
        self.assertEqual(self.host_rows(), self.cache_rows(consumer))
        self.assertEqual(applied, consumer.status()[0]['applied_seq'])

    def test_unconfigured_publisher_is_rejected(self):
        """A signed stream from a publisher not configured is refused."""
        consumer = self.consumer()
        self.assertTrue(consumer.wait_synced(60))
        self.converged(consumer)
        transport = oslo_messaging.get_notification_transport(self.conf)
        self.addCleanup(transport.cleanup)
        intruder = publisher_mod.Publisher(self.conf, transport, 'intruder')
        header = self.handle.tables['accounts'].header()
        for stream in ('intruder', self.stream):
            message = wire.delta_message(stream, [{
                'seq': 10 ** 6, 'txid': 'x', 'committed_at': None,
                'changes': [{'table': 'accounts', 'op': wire.INSERT,
                             'key': [99], 'after': {
                                 'id': 99, 'name': 'evil', 'note': 'x'}}]}],
                {'accounts': header}, key=KEY)
            intruder.publish(wire.EVENT_DELTA, message)
        base.wait_for(lambda: self.rejected(consumer, 'unknown_publisher')
                      == 2, 30, message='intruder not rejected')
        self.assertNotIn((99,), self.cache_rows(consumer))
        self.assertEqual(self.host_rows(), self.cache_rows(consumer))

    def test_wrong_key_consumer_cannot_starve_a_right_one(self):
        """A wrong-key consumer opens nothing; a right one beside it syncs."""
        wrong = service.Consumer(self.other_consumer_conf('not-the-' + KEY))
        right = service.Consumer(self.conf)
        wrong.start()
        self.addCleanup(wrong.stop)
        right.start()
        self.addCleanup(right.stop)
        base.wait_for(lambda: self.handle.metrics.value(
            'oslo_publish_snapshots_refused_total', stream=self.stream,
            reason='bad_signature') >= 3, 30,
            message='the wrong-key consumer was not refused')
        self.assertTrue(right.wait_synced(60))
        self.converged(right)
        self.assertFalse(wrong.synced)
        self.assertEqual({}, self.cache_rows(wrong))
        self.assertEqual(0, self.handle.snapshot_server.open_count())
        wrong.stop()
        right.stop()
        base.wait_for(lambda: containment.open_transactions(self.engine)
                      == 0, 15, message='a host session was left open')

    def test_snapshot_serves_only_allow_listed_tables(self):
        """Unlisted tables are refused with a clear error, logged, counted."""
        client = self.rpc_client()
        refused = (exceptions.SnapshotError, oslo_messaging.RemoteError)
        for tables in (['secrets'], ['accounts', 'oslo_publish_outbox']):
            exc = self.assertRaises(refused, client.call, {},
                                    'snapshot_open', tables=tables,
                                    auth=self.auth(tables))
            self.assertIn('not published by stream %s' % self.stream,
                          str(exc))
            self.assertIn(tables[-1], str(exc))
        opened = client.call({}, 'snapshot_open', tables=['accounts'],
                             auth=self.auth(['accounts']))
        exc = self.assertRaises(refused, client.call, {}, 'snapshot_page',
                                snapshot_id=opened['snapshot_id'],
                                table='secrets', after=None)
        self.assertIn("'secrets' is not part of snapshot", str(exc))
        client.call({}, 'snapshot_close', snapshot_id=opened['snapshot_id'])
        self.assertEqual(3, self.handle.metrics.value(
            'oslo_publish_snapshots_refused_total', stream=self.stream,
            reason='unknown_table'))
        self.assertIn('refused (unknown_table): table(s) secrets not '
                      'published', self.logs.output)
        self.assertIn('oslo_publish_outbox', self.logs.output)
        self.assertNotIn(self.marker, self.logs.output)


class _WrongKeyTests(_SecurityTests):

    CONSUMER_KEY = 'not-the-' + KEY

    def test_consumer_with_another_key_accepts_nothing(self):
        """Wrongly signed snapshots and deltas are rejected, never applied."""
        consumer = self.consumer()
        with self.maker.begin() as session:
            session.add(Account(id=30, name='x'))
        base.wait_for(lambda: self.rejected(consumer, 'bad_signature') > 0,
                      30, message='deltas not rejected as bad_signature')
        self.assertFalse(consumer.synced)
        self.assertEqual({}, self.cache_rows(consumer))
        self.assertNotIn(KEY, self.logs.output)
        self.assertNotIn(self.CONSUMER_KEY, self.logs.output)


class TestSecurityPostgreSQL(_SecurityTests, base.BackendTestCase):
    BACKEND = 'postgresql'


class TestSecurityMariaDB(_SecurityTests, base.BackendTestCase):
    BACKEND = 'mysql'


class TestWrongKeyPostgreSQL(_WrongKeyTests, base.BackendTestCase):
    BACKEND = 'postgresql'

    # Only the wrong-key test for this configuration.
    test_excluded_column_never_leaves_the_host = None
    test_replayed_raw_message_changes_nothing = None
    test_unconfigured_publisher_is_rejected = None
    test_snapshot_serves_only_allow_listed_tables = None
    test_wrong_key_consumer_cannot_starve_a_right_one = None
