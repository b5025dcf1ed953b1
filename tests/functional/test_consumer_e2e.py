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

"""End to end: a real host in another process, RabbitMQ, a consumer.

The host (:mod:`tests.functional.consumer_host`: oslo_publish.install,
relay and snapshot server, and a workload this test controls) runs on
PostgreSQL or MariaDB; the consumer's state store on SQLite, PostgreSQL
or MariaDB. Convergence means: the consumer's cache and its state store's
mirrored rows both equal a direct SELECT of the host tables, every row
and every column.
"""

import datetime
import functools
import gc
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time

import fixtures
import kombu
import oslo_messaging
import sqlalchemy as sa

from consumer import gc_tenure
from consumer import listener
from consumer import service
from consumer import state as state_mod
from oslo_publish import outbox
from oslo_publish import wire
from tests import base
from tests.functional import consumer_host

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
KEY = 'e2e-signing-key'


def _amqp(url):
    return url.replace('rabbit://', 'amqp://', 1)


class HostProcess(fixtures.Fixture):
    """The host runner in a subprocess, driven by JSON lines."""

    def __init__(self, db_url, transport, stream, topic, signing_key=None):
        super().__init__()
        self.args = [sys.executable, '-m', 'tests.functional.consumer_host',
                     '--db', db_url, '--transport-url', transport.url,
                     '--exchange', transport.exchange, '--stream', stream,
                     '--topic', topic]
        if signing_key:
            self.args += ['--signing-key', signing_key]

    def _setUp(self):
        tmp = self.useFixture(fixtures.TempDir()).path
        self.log_path = os.path.join(tmp, 'host.log')
        self._log = open(self.log_path, 'w')
        self.addCleanup(self._log.close)
        self.proc = subprocess.Popen(
            self.args, cwd=ROOT, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._log, text=True)
        self.addCleanup(self._stop)
        self._lines = queue.Queue()
        reader = threading.Thread(target=self._read, daemon=True)
        reader.start()
        self._expect(60)

    def _read(self):
        for line in self.proc.stdout:
            self._lines.put(json.loads(line))
        self._lines.put(None)

    def _expect(self, timeout):
        try:
            reply = self._lines.get(timeout=timeout)
        except queue.Empty:
            reply = None
        if reply is None:
            with open(self.log_path) as log:
                raise AssertionError('host process failed:\n%s'
                                     % log.read()[-4000:])
        return reply

    def command(self, cmd, timeout=120, **kwargs):
        kwargs['cmd'] = cmd
        self.proc.stdin.write(json.dumps(kwargs) + '\n')
        self.proc.stdin.flush()
        return self._expect(timeout)

    def _stop(self):
        if self.proc.poll() is None:
            try:
                self.command('quit', timeout=30)
            except (AssertionError, OSError):
                pass
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class _Base(object):

    HOST_BACKEND = None
    STATE_BACKEND = None
    SIGNED = False

    def setUp(self):
        super().setUp()
        self.setUpConsumerSide(self.STATE_BACKEND)
        self.host = self.useFixture(HostProcess(
            self.host_db.url, self.transport, self.stream, self.topic,
            KEY if self.SIGNED else None))

    def setUpConsumerSide(self, state_backend, **consumer_options):
        """Databases, broker names and consumer options; no host yet.

        ``consumer_options`` override ``[consumer]`` options after the
        defaults of these tests.
        """
        self.host_db = self.host_database()
        self.state_db = self.useFixture(base.DatabaseFixture(
            state_backend))
        self.transport = self.useFixture(self.transport_fixture())
        self.stream = base.unique_name('st')
        self.pool = base.unique_name('pool')
        self.topic = self.transport.topic
        self.addCleanup(self._delete_queues)
        listener.prepare_transport_conf(self.conf)
        # Durable like the host runner's exchange (consumer_host.py).
        self.conf.set_override('amqp_durable_queues', True,
                               'oslo_messaging_rabbit')
        for name, value in (('streams', [self.stream]),
                            ('topics', [self.topic]),
                            ('pool', self.pool),
                            # Long enough that a loaded 2-core machine does
                            # not count scheduling delays as gaps (which
                            # would resync).
                            ('gap_timeout', 3.0),
                            ('inactivity_timeout', 8.0),
                            ('resync_backoff_min', 0.05),
                            ('resync_backoff_max', 0.5),
                            ('resyncs_per_minute', 30),
                            ('snapshot_timeout', 20.0),
                            ('max_message_bytes', 262144),
                            ('signing_key', KEY if self.SIGNED else None),
                            *consumer_options.items()):
            self.conf.set_override(name, value, 'consumer')
        self.conf.set_override('connection', self.state_db.url,
                               'consumer_database')
        self.conf.set_override('max_retries', 3, 'consumer_database')
        self.conf.set_override('retry_interval', 1, 'consumer_database')
        self.conf.set_override('rabbit_interval_max', 2,
                               'oslo_messaging_rabbit')

    def transport_fixture(self):
        """The broker of the test (the shared RabbitMQ)."""
        return base.TransportFixture(self.conf)

    def host_database(self):
        """The host's database fixture (a fresh ``HOST_BACKEND`` one)."""
        return self.useFixture(base.DatabaseFixture(self.HOST_BACKEND))

    def _delete_queues(self):
        try:
            with kombu.Connection(_amqp(self.transport.url)) as conn:
                channel = conn.channel()
                for name in (self.pool, self.topic + '.info',
                             self.topic + '_shuffled.info'):
                    channel.queue_delete(name)
                channel.exchange_delete(self.transport.exchange)
        except Exception:  # noqa: best-effort broker cleanup
            pass

    # ------------------------------------------------------------ helpers

    def consumer(self):
        consumer = service.Consumer(self.conf)
        consumer.start()
        self.addCleanup(self._stop_consumer, consumer)
        return consumer

    @staticmethod
    def _stop_consumer(consumer):
        if not consumer._stopping.is_set():
            consumer.stop()

    def host_rows(self):
        return base.table_rows(self.host_db.engine,
                               consumer_host.Base.metadata.sorted_tables)

    def raw(self, *statements):
        """Run SQL on the host database, bypassing any middleware."""
        with self.host_db.engine.begin() as conn:
            for sql in statements:
                conn.exec_driver_sql(sql)

    def host_last_seq(self):
        with self.host_db.engine.connect() as conn:
            return conn.execute(sa.select(outbox.streams.c.last_seq).where(
                outbox.streams.c.stream == self.stream)).scalar() or 0

    @staticmethod
    def cache_rows(consumer):
        view = consumer.view()
        return {t: {k: dict(r) for k, r in view.rows(t).items()}
                for t in consumer_host.TABLES}

    def state_rows(self):
        store = state_mod.StateStore.from_url(self.state_db.url)
        try:
            return {t: dict(store.load_rows(self.stream, t))
                    for t in consumer_host.TABLES}
        finally:
            store.close()

    def settle(self):
        """Wait for the workload and for the relay to publish it all."""
        self.host.command('wait')
        self.assertTrue(self.host.command('idle')['idle'])

    def assertConverges(self, consumer=None, timeout=40):
        expected = self.host_rows()
        if consumer is not None:
            base.wait_for(lambda: self.cache_rows(consumer) == expected,
                          timeout, message='cache did not converge')
        base.wait_for(lambda: self.state_rows() == expected, timeout,
                      message='state store did not converge')
        self.assertGreater(sum(len(rows) for rows in expected.values()), 0)

    def wait_caught_up(self, consumer, timeout=30):
        base.wait_for(lambda: consumer.status()[0]['applied_seq'] ==
                      self.host_last_seq(), timeout,
                      message='consumer did not reach the host position')
        return consumer.status()[0]['applied_seq']

    def sync_process(self):
        """A consumer-sync config file and a function that starts one.

        :returns: ``(config path, spawn)``; ``spawn()`` starts a
            consumer-sync process logging to ``<config>.log``, killed at
            cleanup.
        """
        config = os.path.join(self.useFixture(fixtures.TempDir()).path,
                              'consumer.conf')
        with open(config, 'w') as out:
            out.write(_config_text(self.conf, self.transport))
        log = open(config + '.log', 'w')
        self.addCleanup(log.close)

        def spawn():
            proc = subprocess.Popen(
                [sys.executable, '-m', 'consumer.cmd.sync',
                 '--config-file', config], cwd=ROOT, stdout=log,
                stderr=subprocess.STDOUT)
            self.addCleanup(_kill, proc)
            return proc

        return config, spawn

    def upgraded_store(self):
        store = state_mod.StateStore.from_url(self.state_db.url)
        self.addCleanup(store.close)
        store.upgrade()
        return store

    def stored_counters(self, store):
        """The stream's counters in the state store's status record."""
        found = store.status().get(self.stream)
        return found.counters if found else {}

    def resyncs(self, consumer, cause):
        return consumer.metrics.value('consumer_resyncs_total',
                                      stream=self.stream, cause=cause)


class _Flows(_Base):

    def test_initial_sync_under_concurrent_writes(self):
        """A snapshot taken while writers run converges exactly."""
        self.host.command('preload', rows=300)
        self.host.command('write', tx=300, writers=4, seed=1)
        consumer = self.consumer()
        self.assertTrue(consumer.wait_synced(60))
        self.settle()
        self.assertConverges(consumer)
        self.assertEqual(1, self.resyncs(consumer, 'initial'))
        self.wait_caught_up(consumer)

    def test_queue_purged_while_down_resyncs(self):
        """Deltas lost while the consumer was down are resynchronised."""
        self.host.command('preload', rows=50)
        first = self.consumer()
        self.assertTrue(first.wait_synced(60))
        first.stop()
        self.host.command('write', tx=60, writers=2, seed=2)
        self.settle()
        with kombu.Connection(_amqp(self.transport.url)) as conn:
            conn.channel().queue_purge(self.pool)
        second = self.consumer()
        self.assertConverges(second)
        self.assertEqual(0, self.resyncs(second, 'initial'))
        self.assertGreaterEqual(
            self.resyncs(second, 'heartbeat') + self.resyncs(second, 'gap'),
            1)

    def test_sigkill_mid_stream_resumes_without_snapshot(self):
        """consumer-sync killed with SIGKILL resumes from its state store."""
        config, spawn = self.sync_process()
        self.host.command('preload', rows=100)
        store = self.upgraded_store()
        proc = spawn()

        status = functools.partial(self.stored_counters, store)

        base.wait_for(lambda: status().get('synced'), 60,
                      message='consumer-sync never synced')
        self.host.command('write', tx=400, writers=2, seed=3)
        start = status().get('applied_seq') or 0
        base.wait_for(lambda: (status().get('applied_seq') or 0) > start + 20,
                      60)
        proc.kill()
        proc.wait()
        killed_at = status().get('applied_seq')
        self.host.command('wait')
        # And more while it is down: they wait in its durable queue.
        self.host.command('write', tx=100, writers=2, seed=8)
        self.settle()
        self.assertLess(killed_at or 0, self.host_last_seq())
        restarted = time.time()
        proc = spawn()
        base.wait_for(
            lambda: (store.status()[self.stream].updated_at.timestamp()
                     > restarted and status().get('applied_seq') ==
                     self.host_last_seq()), 60,
            message='restarted consumer did not catch up')
        self.assertConverges()
        counters = status()
        self.assertEqual([], [k for k in counters if k.startswith('resync_')],
                         counters)
        for table in consumer_host.TABLES:
            dumped = subprocess.run(
                [sys.executable, '-m', 'consumer.cmd.dump', '--config-file',
                 config, '--table', table], cwd=ROOT, capture_output=True,
                text=True, timeout=60)
            self.assertEqual(0, dumped.returncode, dumped.stderr)
            rows = [json.loads(line) for line in dumped.stdout.splitlines()]
            expected = self.host_rows()[table]
            self.assertEqual(
                [wire.encode_row(expected[k]) for k in sorted(expected)],
                rows)
        shown = subprocess.run(
            [sys.executable, '-m', 'consumer.cmd.status', '--config-file',
             config], cwd=ROOT, capture_output=True, text=True, timeout=60)
        self.assertEqual(0, shown.returncode, shown.stderr)
        self.assertIn('stream=%s state=live applied_seq=%d'
                      % (self.stream, self.host_last_seq()), shown.stdout)
        self.assertIn('synced=yes', shown.stdout)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(0, _wait_logged(proc, config + '.log', 30))
        final = store.status()[self.stream]
        self.assertEqual('stopped', final.state)
        self.assertEqual(self.host_last_seq(), final.counters['applied_seq'])

    def test_duplicated_reordered_dropped_messages_converge(self):
        """Duplicates, reordering and drops end in the host's rows."""
        shuffled = self.topic + '_shuffled'
        self.conf.set_override('topics', [shuffled], 'consumer')
        shuffler = self.useFixture(Shuffler(self.conf, self.topic, shuffled,
                                            self.pool))
        self.host.command('preload', rows=50)
        consumer = self.consumer()
        self.assertTrue(consumer.wait_synced(60))
        shuffler.faults = True
        self.host.command('write', tx=200, writers=2, seed=4)
        self.settle()
        shuffler.faults = False
        self.host.command('write', tx=5, writers=1, seed=5)
        self.settle()
        self.assertConverges(consumer)
        self.assertGreater(shuffler.counts['duplicated'], 0)
        self.assertGreater(consumer.metrics.value(
            'consumer_duplicates_dropped_total', stream=self.stream), 0)
        if shuffler.counts['dropped']:
            self.assertGreaterEqual(
                self.resyncs(consumer, 'gap') +
                self.resyncs(consumer, 'heartbeat'), 1)


class _BadInput(_Base):

    SIGNED = True

    def test_each_bad_input_class_is_rejected_and_counted(self):
        """Every bad-input class is rejected, counted, and changes nothing."""
        ghost_pub = wire.publisher_id('ghost')
        self.conf.set_override('allowed_publishers', [
            wire.publisher_id(self.stream), ghost_pub], 'consumer')
        self.host.command('preload', rows=30)
        consumer = self.consumer()
        self.assertTrue(consumer.wait_synced(60))
        self.host.command('write', tx=20, writers=1, seed=6)
        self.settle()
        self.assertConverges(consumer)
        applied = self.wait_caught_up(consumer)
        good_pub = wire.publisher_id(self.stream)

        def delta(seq, table='items', key=None, stream=None):
            tx = {'seq': seq, 'txid': 'x', 'committed_at': None,
                  'changes': [{'table': table, 'op': 'delete',
                               'key': [10 ** 6], 'before': {'id': 10 ** 6}}]}
            header = {table: {'pk': ['id'], 'version': 'v'}}
            return wire.delta_message(stream or self.stream, [tx], header,
                                      key=key)

        old = delta(1, key=KEY)
        old['tables']['items']['version'] = consumer.driver.reconcilers[
            self.stream]._known['items']['version']
        wire.sign(old, KEY)
        huge = delta(applied + 1, key=KEY)
        huge['transactions'][0]['changes'][0]['before']['pad'] = 'x' * 300000
        wire.sign(huge, KEY)
        newer = dict(delta(applied + 1), format='2.0')
        wire.sign(newer, KEY)
        cases = [
            ('oversized', good_pub, wire.EVENT_DELTA, huge),
            ('malformed', good_pub, wire.EVENT_DELTA, {'format': '1.0'}),
            ('malformed', good_pub, 'oslo_publish.bogus', old),
            ('unknown_version', good_pub, wire.EVENT_DELTA, newer),
            ('unsigned', good_pub, wire.EVENT_DELTA, delta(applied + 1)),
            ('bad_signature', good_pub, wire.EVENT_DELTA,
             delta(applied + 1, key='wrong')),
            ('unknown_publisher', 'oslo_publish.intruder',
             wire.EVENT_DELTA, delta(applied + 1, key=KEY)),
            ('unknown_publisher', 'compute.node1',
             'compute.instance.create.end', {'x': 1}),
            ('replayed', good_pub, wire.EVENT_DELTA, old),
            ('unknown_stream', ghost_pub, wire.EVENT_DELTA,
             delta(1, key=KEY, stream='ghost')),
            ('unknown_table', good_pub, wire.EVENT_DELTA,
             delta(applied + 1, table='ghost', key=KEY)),
        ]
        transport = oslo_messaging.get_notification_transport(self.conf)
        self.addCleanup(transport.cleanup)
        expected = {}
        for reason, publisher, event_type, payload in cases:
            notifier = oslo_messaging.Notifier(
                transport, publisher_id=publisher, driver='messagingv2',
                topics=[self.topic])
            notifier.info({}, event_type, payload)
            expected[reason] = expected.get(reason, 0) + 1

        def counted():
            got = {}
            for reason in expected:
                got[reason] = sum(consumer.metrics.value(
                    'consumer_rejected_total', stream=s, reason=reason)
                    for s in (self.stream, '-'))
            return got == expected
        base.wait_for(counted, 30, message='rejections not counted')
        # The unknown table made the stream check its tables again.
        base.wait_for(lambda: self.resyncs(consumer, 'schema') == 1, 30)
        self.assertTrue(consumer.wait_synced(30))
        self.assertEqual(0, consumer.metrics.value(
            'consumer_rejected_total', stream='-', reason='error'))
        self.assertConverges(consumer)
        self.assertEqual(applied, consumer.status()[0]['applied_seq'])
        self.host.command('write', tx=10, writers=1, seed=7)
        self.settle()
        self.assertConverges(consumer)


class _Recovery(_Base):

    def test_periodic_resync_repairs_raw_writes(self):
        """Raw SQL writes capture cannot see are found as drift, fixed."""
        self.conf.set_override('resync_interval', 1.0, 'consumer')
        # The stream's exchange named explicitly, not this control_exchange.
        self.conf.set_override('exchanges',
                               {self.stream: self.transport.exchange},
                               'consumer')
        self.conf.set_override('control_exchange', base.unique_name('ox'))
        self.host.command('preload', rows=20)
        consumer = self.consumer()
        self.assertTrue(consumer.wait_synced(60))
        self.assertConverges(consumer)
        reply = self.host.command(
            'raw', sql="UPDATE items SET name = 'raw' WHERE id IN (3, 4)")
        self.assertEqual(2, reply['rowcount'])
        base.wait_for(lambda: consumer.metrics.value(
            'consumer_drift_rows_total', stream=self.stream,
            table='items') == 2, 30, message='drift not detected')
        self.assertConverges(consumer)
        self.assertEqual('raw', consumer.view().get('items', (3,))['name'])
        self.assertTrue(consumer.synced)

    def test_backlog_after_downtime_drains_without_resync(self):
        """A large queued backlog is applied in order, with no resync."""
        self.conf.set_override('reorder_window', 100, 'consumer')
        self.host.command('preload', rows=20)
        first = self.consumer()
        self.assertTrue(first.wait_synced(60))
        first.stop()
        self.host.command('write', tx=1500, writers=4, seed=12)
        self.settle()
        second = self.consumer()
        self.assertConverges(second)
        self.wait_caught_up(second)
        self.assertEqual([], [k for k in second.status()[0]
                              if k.startswith('resync_')])


def _wait_logged(proc, log_path, timeout):
    """``proc``'s exit status; a failure quoting its log if it hangs."""
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        # Its threads' stacks (consumer-sync dumps them on SIGUSR2).
        size = os.path.getsize(log_path)
        proc.send_signal(signal.SIGUSR2)
        base.wait_for(lambda: os.path.getsize(log_path) > size, 10,
                      message='no stacks dumped')
        with open(log_path, errors='replace') as f:
            tail = f.read()[-12000:]
        raise AssertionError('%s did not exit within %ss; its log ends:\n%s'
                             % (' '.join(proc.args[1:4]), timeout, tail))


def _kill(proc):
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _config_text(conf, transport):
    opts = conf.consumer
    lines = ['[DEFAULT]', 'transport_url = %s' % transport.url,
             'control_exchange = %s' % transport.exchange,
             '[oslo_messaging_rabbit]', 'amqp_durable_queues = true',
             'rabbit_interval_max = 2',
             '[consumer]', 'streams = %s' % ','.join(opts.streams),
             'topics = %s' % ','.join(opts.topics), 'pool = %s' % opts.pool,
             'gap_timeout = %s' % opts.gap_timeout,
             'inactivity_timeout = %s' % opts.inactivity_timeout,
             'resync_backoff_min = %s' % opts.resync_backoff_min,
             'resync_backoff_max = %s' % opts.resync_backoff_max,
             'snapshot_timeout = %s' % opts.snapshot_timeout,
             'resyncs_per_minute = %s' % opts.resyncs_per_minute,
             'ack_timeout = %s' % opts.ack_timeout,
             '[consumer_database]',
             'connection = %s' % conf.consumer_database.connection,
             'max_retries = 3', 'retry_interval = 1']
    if opts.signing_key:
        lines.insert(lines.index('[consumer_database]'),
                     'signing_key = %s' % opts.signing_key)
    return '\n'.join(lines) + '\n'


class _Endpoint(object):

    def __init__(self, inbox):
        self.inbox = inbox

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        self.inbox.put((publisher_id, event_type, payload))
        return oslo_messaging.NotificationResult.HANDLED


class Shuffler(fixtures.Fixture):
    """Relays the host's topic to the consumer's, injecting faults.

    While ``faults`` is set, each message may be duplicated (20%), held
    back and sent after the next one (20%) or dropped (3%).
    """

    def __init__(self, conf, source_topic, target_topic, pool):
        super().__init__()
        self.conf = conf
        self.source_topic = source_topic
        self.target_topic = target_topic
        self.pool = pool + '-shuffler'
        self.faults = False
        self.counts = {'duplicated': 0, 'reordered': 0, 'dropped': 0}

    def _setUp(self):
        self.transport = oslo_messaging.get_notification_transport(self.conf)
        self.addCleanup(self.transport.cleanup)
        self.inbox = queue.Queue()
        self.listener = oslo_messaging.get_notification_listener(
            self.transport, [oslo_messaging.Target(topic=self.source_topic)],
            [_Endpoint(self.inbox)], executor='threading', pool=self.pool)
        self.listener.start()
        self.addCleanup(self._stop)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _stop(self):
        self._stopping.set()
        self.inbox.put(None)
        self._thread.join(10)
        self.listener.stop()
        self.listener.wait()
        try:
            with kombu.Connection(_amqp(self.conf.transport_url)) as conn:
                conn.channel().queue_delete(self.pool)
        except Exception:  # noqa: best-effort broker cleanup
            pass

    def _send(self, item):
        publisher_id, event_type, payload = item
        notifier = oslo_messaging.Notifier(
            self.transport, publisher_id=publisher_id, driver='messagingv2',
            topics=[self.target_topic])
        notifier.info({}, event_type, payload)

    def _run(self):
        rng = random.Random(42)
        held = None
        while not self._stopping.is_set():
            try:
                item = self.inbox.get(timeout=0.1)
            except queue.Empty:
                if held is not None:
                    self._send(held)
                    held = None
                continue
            if item is None:
                return
            roll = rng.random() if self.faults else 1.0
            if roll < 0.03 and item[1] == wire.EVENT_DELTA:
                self.counts['dropped'] += 1
                continue
            if roll < 0.23 and held is None:
                held = item
                self.counts['reordered'] += 1
                continue
            self._send(item)
            if roll < 0.43:
                self._send(item)
                self.counts['duplicated'] += 1
            if held is not None:
                self._send(held)
                held = None


class Holder(Shuffler):
    """Relays the host's topic, holding back one delta until released.

    The first delta message whose ``first_seq`` is at least ``hold_from``
    (when set) is kept until :meth:`release`; the others pass in order.
    """

    def __init__(self, conf, source_topic, target_topic, pool):
        super().__init__(conf, source_topic, target_topic, pool)
        self.hold_from = None
        self.held = None
        self._release = threading.Event()

    def release(self):
        self._release.set()

    def _run(self):
        while not self._stopping.is_set():
            if self.held is not None and self._release.is_set():
                self._send(self.held)
                self._release.clear()
            try:
                item = self.inbox.get(timeout=0.05)
            except queue.Empty:
                continue
            if item is None:
                return
            if self.held is None and self.hold_from is not None and \
                    item[1] == wire.EVENT_DELTA and \
                    item[2]['first_seq'] >= self.hold_from:
                self.held = item
                continue
            self._send(item)


class _Durability(_Base):

    def test_sigkill_with_delta_waiting_past_gap_timeout(self):
        """A delta waiting past gap_timeout is unacknowledged: no resync.

        Its predecessor is held back; the consumer is killed (SIGKILL)
        after gap_timeout, while the gap resync waits for its rate limit.
        After the restart the broker redelivers what was not persisted,
        the predecessor arrives, and the consumer converges without any
        resync.
        """
        held_topic = self.topic + '_held'
        self.conf.set_override('topics', [held_topic], 'consumer')
        self.conf.set_override('gap_timeout', 1.0, 'consumer')
        self.conf.set_override('resyncs_per_minute', 1, 'consumer')
        holder = self.useFixture(Holder(self.conf, self.topic, held_topic,
                                        self.pool))
        config, spawn = self.sync_process()
        self.host.command('preload', rows=30)
        store = self.upgraded_store()
        proc = spawn()

        status = functools.partial(self.stored_counters, store)

        base.wait_for(lambda: status().get('synced'), 60,
                      message='consumer-sync never synced')
        synced_at = time.monotonic()
        holder.hold_from = self.host_last_seq() + 1
        self.host.command('write', tx=30, writers=1, seed=11)
        self.settle()
        base.wait_for(lambda: holder.held is not None, 30)
        held_seq = holder.held[2]['first_seq']
        self.assertLess(held_seq, self.host_last_seq())
        # The later deltas wait for it, past gap_timeout, unapplied.
        base.wait_for(lambda: status().get('pending_resync') == 'gap', 30,
                      message='the gap was not noticed')
        self.assertEqual(held_seq - 1, status().get('applied_seq'))
        self.assertLess(time.monotonic() - synced_at, 50,
                        'too slow: the rate limit would start the resync')
        proc.kill()
        proc.wait()
        durable = status().get('applied_seq')
        self.assertEqual(held_seq - 1, durable)
        holder.release()
        restarted = time.time()
        proc = spawn()
        base.wait_for(
            lambda: (store.status()[self.stream].updated_at.timestamp()
                     > restarted and status().get('applied_seq') ==
                     self.host_last_seq()), 60,
            message='restarted consumer did not catch up')
        self.assertConverges()
        counters = status()
        self.assertEqual([], [k for k in counters if k.startswith('resync_')],
                         counters)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(0, _wait_logged(proc, config + '.log', 30))

    def test_sigkill_before_the_snapshot_is_durable(self):
        """Killed while synced but before its snapshot is stored.

        The state store's position row of the first table is held by an
        open transaction of the test, so the snapshot's write (which
        sets the positions last, in the transaction of its rows) waits.
        The consumer is synced, applies deltas and acknowledges none;
        it is killed (SIGKILL). Nothing of the snapshot is stored; the
        restarted consumer takes a new initial snapshot, gets the
        deltas again and converges.
        """
        config, spawn = self.sync_process()
        self.host.command('preload', rows=200)
        store = self.upgraded_store()
        blocker = store.engine.connect()
        self.addCleanup(blocker.close)
        held = blocker.begin()
        blocker.execute(state_mod.positions.insert().values(
            scope_id=consumer_host.TABLES[0], scope_key=self.stream,
            collector='oslo_publish', fetcher='snapshot'))
        proc = spawn()

        status = functools.partial(self.stored_counters, store)

        base.wait_for(lambda: status().get('synced'), 60,
                      message='consumer-sync never synced')
        self.host.command('write', tx=40, writers=2, seed=12)
        self.settle()
        base.wait_for(lambda: status().get('applied_seq') ==
                      self.host_last_seq(), 30,
                      message='the deltas were not applied')
        self.assertIsNone(status().get('durable_seq'))
        proc.kill()
        proc.wait()
        held.rollback()
        self.assertEqual({}, store.load(self.stream, 'oslo_publish',
                                        'snapshot'))
        self.assertEqual({t: {} for t in consumer_host.TABLES},
                         self.state_rows())
        restarted = time.time()
        proc = spawn()
        base.wait_for(
            lambda: (store.status()[self.stream].updated_at.timestamp()
                     > restarted and status().get('durable_seq') ==
                     self.host_last_seq()), 60,
            message='restarted consumer did not catch up')
        self.assertConverges()
        self.assertEqual(1, status().get('resync_initial'))
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(0, _wait_logged(proc, config + '.log', 30))


class _HostChanges(_Base):

    def test_gc_tenure_converges_and_ends_with_the_consumer(self):
        """gc_tenure freezes survivors while the consumer runs, not after."""
        self.addCleanup(gc.unfreeze)
        self.conf.set_override('gc_tenure', True, 'consumer')
        self.host.command('preload', rows=100)
        consumer = self.consumer()
        self.assertTrue(consumer.wait_synced(60))
        self.assertTrue(gc_tenure.installed())
        gc.collect()
        self.assertGreater(gc.get_freeze_count(), 0)
        self.host.command('write', tx=200, writers=2, seed=3)
        self.settle()
        self.assertConverges(consumer)
        consumer.stop()
        self.assertFalse(gc_tenure.installed())
        self.assertEqual(0, gc.get_freeze_count())

    def _host_tables(self):
        return list(consumer_host.Base.metadata.sorted_tables) + [
            outbox.outbox, outbox.streams]

    def _dump(self):
        with self.host_db.engine.connect() as conn:
            return [(table, [dict(row._mapping) for row in
                             conn.execute(sa.select(table))])
                    for table in self._host_tables()]

    def _restore(self, dump):
        """Put the host database back as dumped (rows copied back)."""
        with self.host_db.engine.begin() as conn:
            for table, _rows in reversed(dump):
                conn.execute(table.delete())
            for table, rows in dump:
                if rows:
                    conn.execute(table.insert(), rows)

    def test_restored_host_database_resyncs(self):
        """A host restored from an earlier dump is noticed (cause epoch).

        The restored stream numbers transactions again from the dump's
        seq, below the consumer's position; its heartbeats reveal the
        rewind, the consumer resyncs and converges.
        """
        self.host.command('preload', rows=30)
        consumer = self.consumer()
        self.assertTrue(consumer.wait_synced(60))
        self.host.command('write', tx=10, writers=1, seed=21)
        self.settle()
        self.wait_caught_up(consumer)
        dump = self._dump()
        self.host.command('write', tx=40, writers=1, seed=22)
        self.settle()
        before = self.wait_caught_up(consumer)
        self._restore(dump)
        self.host.command('write', tx=5, writers=1, seed=23)
        self.settle()
        self.assertLess(self.host_last_seq(), before)
        base.wait_for(lambda: self.resyncs(consumer, 'epoch') >= 1, 60,
                      message='the rewound host was not noticed')
        self.assertConverges(consumer)
        self.wait_caught_up(consumer)
        self.assertEqual(0, self.resyncs(consumer, 'periodic'))

    def test_invalidation_rereads_the_table(self):
        """An invalidation published by the relay re-reads its table."""
        self.host.command('preload', rows=30)
        consumer = self.consumer()
        self.assertTrue(consumer.wait_synced(60))
        self.settle()
        self.wait_caught_up(consumer)
        self.host.command(
            'raw', sql="UPDATE items SET name = 'unseen' WHERE id IN (3, 4)")
        store = state_mod.StateStore.from_url(self.state_db.url)
        self.addCleanup(store.close)
        version = [scope.schema_version for table, scope in store.load(
            self.stream, 'oslo_publish', 'snapshot').items()
            if table == 'items'][0]
        payload = {'changes': [wire.encode_change(
            wire.invalidation('items', 'e2e'))],
            'tables': {'items': {'pk': ['id'], 'version': version}}}
        with self.host_db.engine.begin() as conn:
            conn.execute(outbox.outbox.insert().values(
                stream=self.stream, txid='e2e-invalidation',
                committed_at=datetime.datetime.now(
                    datetime.timezone.utc).replace(tzinfo=None),
                payload=json.dumps(payload)))
        self.settle()
        self.assertConverges(consumer)
        self.assertEqual('unseen',
                         consumer.view().get('items', (3,))['name'])
        self.assertEqual(1, consumer.metrics.value(
            'consumer_table_invalidations_total', stream=self.stream,
            table='items', cause='e2e'))
        self.assertEqual(1, self.resyncs(consumer, 'invalidate'))
        self.assertEqual(0, self.resyncs(consumer, 'gap'))
        self.assertEqual(0, self.resyncs(consumer, 'periodic'))


class TestHostChangesPostgreSQL(_HostChanges, base.TestCase):
    HOST_BACKEND = 'postgresql'
    STATE_BACKEND = 'mysql'


class TestDurabilityPostgreSQL(_Durability, base.TestCase):
    HOST_BACKEND = 'postgresql'
    STATE_BACKEND = 'postgresql'


class TestE2EPostgreSQLHostSQLiteState(_Flows, base.TestCase):
    HOST_BACKEND = 'postgresql'
    STATE_BACKEND = 'sqlite'


class TestE2EMariaDBHostPostgreSQLState(_Flows, base.TestCase):
    HOST_BACKEND = 'mysql'
    STATE_BACKEND = 'postgresql'


class TestE2EPostgreSQLHostMariaDBState(_Flows, base.TestCase):
    HOST_BACKEND = 'postgresql'
    STATE_BACKEND = 'mysql'


class TestBadInputPostgreSQL(_BadInput, base.TestCase):
    HOST_BACKEND = 'postgresql'
    STATE_BACKEND = 'sqlite'


class TestRecoveryMariaDB(_Recovery, base.TestCase):
    HOST_BACKEND = 'mysql'
    STATE_BACKEND = 'sqlite'
