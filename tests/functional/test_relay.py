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

"""The relay publishes committed outbox entries with gapless seqs."""

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import threading
from unittest import mock
import urllib.request

import fixtures
import oslo_messaging
import sqlalchemy as sa

from oslo_publish.cmd import status
from oslo_publish import exceptions
from oslo_publish import outbox
from oslo_publish import publisher
from oslo_publish import wire
from tests import base
from tests.functional import delivery


class LoseConfirmation(fixtures.Fixture):
    """Publish call number ``nth`` reaches the broker, then fails.

    As when the confirmation is lost: the message is on the bus but the
    relay gets a DeliveryError.
    """

    def __init__(self, nth):
        super().__init__()
        self.nth = nth
        self.calls = 0

    def _setUp(self):
        real = publisher.Publisher.publish
        fixture = self

        def publish(self, event_type, payload):
            fixture.calls += 1
            real(self, event_type, payload)
            if fixture.calls == fixture.nth:
                raise exceptions.DeliveryError('confirmation lost')
        self.useFixture(fixtures.MonkeyPatch(
            'oslo_publish.publisher.Publisher.publish', publish))


class _RelayTests(delivery.RelayTestMixin):

    def test_publishes_gapless_seqs_and_deletes_entries(self):
        """Pending entries get seqs 1..n in id order and are deleted."""
        txids = delivery.write_entries(self.engine, self.stream, 5)
        r = self.make_relay()
        self.assertEqual(3, r.run_once())
        self.assertEqual(2, r.run_once())
        self.assertEqual(0, r.run_once())
        self.receiver.wait_seqs(5)
        got = self.receiver.transactions()
        self.assertEqual(txids, [tx['txid'] for tx in got])
        self.assertEqual([1, 2, 3, 4, 5], [tx['seq'] for tx in got])
        for message in self.receiver.deltas():
            wire.validate(message)
            self.assertEqual(self.stream, message['stream'])
        self.assertEqual([], delivery.outbox_rows(self.engine, self.stream))
        self.assertEqual(5, delivery.last_seq(self.engine, self.stream))
        self.assertEqual(5, self.metric(
            'oslo_publish_deltas_published_total'))
        self.assertEqual(2, self.metric(
            'oslo_publish_messages_published_total'))
        self.assertEqual(0, self.metric('oslo_publish_relay_backlog'))
        self.assertEqual(5, self.metric('oslo_publish_last_seq'))

    def test_an_idle_look_reads_no_metric_back(self):
        """Nothing pending: gauges set, the registry is not collected."""
        delivery.write_entries(self.engine, self.stream, 1)
        r = self.make_relay()
        self.assertEqual(1, r.run_once())
        with mock.patch.object(r.metrics.registry, 'get_sample_value',
                               side_effect=AssertionError('read back')):
            self.assertEqual(0, r.run_once())
        self.assertEqual(1, self.metric('oslo_publish_last_seq'))
        self.assertEqual(0, self.metric('oslo_publish_relay_backlog'))

    def test_retention_keeps_marked_entries(self):
        """With a retention, published entries keep their seq and time."""
        self.conf.set_override('outbox_retention', 3600.0, 'oslo_publish')
        txids = delivery.write_entries(self.engine, self.stream, 2)
        self.make_relay().run_once()
        rows = delivery.outbox_rows(self.engine, self.stream)
        self.assertEqual(txids, [r.txid for r in rows])
        self.assertEqual([1, 2], [r.seq for r in rows])
        self.assertTrue(all(r.published_at is not None for r in rows))
        self.assertEqual([1, 2], self.receiver.wait_seqs(2))

    def test_numbering_is_all_or_nothing(self):
        """Numbering rows one of which got a number meanwhile numbers none.

        (On PostgreSQL the numbering UPDATE commits by itself, so the
        statement itself must refuse.)
        """
        r = self.make_relay()
        delivery.write_entries(self.engine, self.stream, 3)
        with r.holding() as held:
            rows = held.conn.execute(r.pending_query()).all()
            self.assertEqual(3, len(rows))
            o = outbox.outbox
            with self.engine.begin() as conn:  # behind the relay's back
                conn.execute(o.update().where(o.c.id == rows[1].id)
                             .values(seq=99))
            self.assertRaises(RuntimeError, r.assign, held, rows)
        self.assertEqual([None, 99, None],
                         [row.seq for row in delivery.outbox_rows(
                             self.engine, self.stream)])

    def test_cycle_fills_the_batch_after_numbered_entries(self):
        """Numbered, unmarked entries go first; pending ones follow them.

        The batch holds at most ``batch_size`` entries: numbered ones
        (republished with their numbers) and then pending ones, numbered
        after the highest number given, in id order.
        """
        self.conf.set_override('batch_size', 3, 'oslo_publish')
        self.useFixture(delivery.DieBeforeMark())
        first = delivery.write_entries(self.engine, self.stream, 2)
        self.assertRaises(delivery.RelayDied, self.make_relay().run_once)
        self.assertEqual([(first[0], 1), (first[1], 2)],
                         [(t, s) for t, s, _p in delivery.outbox_rows(
                             self.engine, self.stream)])
        later = delivery.write_entries(self.engine, self.stream, 3,
                                       start=3)
        r = self.make_relay()
        self.assertEqual(3, r.run_once())  # 1, 2 again and 3
        self.assertEqual(3, delivery.last_seq(self.engine, self.stream))
        self.assertEqual([(later[1], None), (later[2], None)],
                         [(t, s) for t, s, _p in delivery.outbox_rows(
                             self.engine, self.stream)])
        self.assertEqual(2, r.run_once())
        self.assertEqual([1, 2, 3, 4, 5], self.receiver.wait_seqs(5))
        base.wait_for(lambda: len(self.receiver.transactions()) >= 7)
        got = self.receiver.transactions()
        delivery.assert_gapless(self, got, 5)
        self.assertEqual(first + later, delivery.consume(got))
        self.assertEqual(0, delivery.pending(self.engine, self.stream))

    def test_full_batch_of_numbered_entries_numbers_nothing(self):
        """When numbered entries fill the batch no new number is given."""
        self.conf.set_override('batch_size', 2, 'oslo_publish')
        self.useFixture(delivery.DieBeforeMark())
        txids = delivery.write_entries(self.engine, self.stream, 2)
        self.assertRaises(delivery.RelayDied, self.make_relay().run_once)
        txids += delivery.write_entries(self.engine, self.stream, 1,
                                        start=3)
        r = self.make_relay()
        self.assertEqual(2, r.run_once())
        self.assertEqual([(txids[2], None)],
                         [(t, s) for t, s, _p in delivery.outbox_rows(
                             self.engine, self.stream)])
        self.assertEqual(1, r.run_once())
        self.assertEqual([1, 2, 3], self.receiver.wait_seqs(3))
        self.assertEqual(3, delivery.last_seq(self.engine, self.stream))

    def test_refused_broker_marks_nothing(self):
        """A broker that refuses leaves entries pending, then they go."""
        txids = delivery.write_entries(self.engine, self.stream, 2)
        dead = oslo_messaging.get_notification_transport(
            self.conf, url=delivery.DEAD_BROKER)
        self.addCleanup(dead.cleanup)
        self.assertRaises(exceptions.DeliveryError,
                          self.make_relay(transport=dead).run_once)
        self.assertEqual(2, delivery.pending(self.engine, self.stream))
        self.assertEqual(0, delivery.last_seq(self.engine, self.stream))
        self.assertEqual(2, self.make_relay().run_once())
        self.receiver.wait_seqs(2)
        self.assertEqual(txids, [tx['txid']
                                 for tx in self.receiver.transactions()])

    def test_relay_death_after_confirm_keeps_numbers(self):
        """A relay dying before it marks never lets a number change owner.

        Entry A (id 10) is published as seq 1, then the relay dies before
        marking it; entry C with the smaller id 9 commits afterwards. The
        next relay republishes A as seq 1 and gives C seq 2, so a
        consumer that applied A at 1 still applies C.
        """
        died = self.useFixture(delivery.DieBeforeMark())
        a = delivery.insert_entry(self.engine, self.stream, 10, 'a')
        self.assertRaises(delivery.RelayDied, self.make_relay().run_once)
        self.assertEqual(1, died.deaths)
        self.assertEqual([1], self.receiver.wait_seqs(1))
        first = self.receiver.transactions()
        self.assertEqual([a], [tx['txid'] for tx in first])
        self.assertEqual([(a, 1, None)],
                         delivery.outbox_rows(self.engine, self.stream))
        self.assertEqual(0, delivery.last_seq(self.engine, self.stream))
        self.assertEqual(1, delivery.pending(self.engine, self.stream))
        c = delivery.insert_entry(self.engine, self.stream, 9, 'c')
        self.assertEqual(2, self.make_relay().run_once())
        self.assertEqual([1, 2], self.receiver.wait_seqs(2))
        base.wait_for(lambda: len(self.receiver.transactions()) >= 3)
        got = self.receiver.transactions()
        delivery.assert_gapless(self, got, 2)
        self.assertEqual({1: a, 2: c}, {tx['seq']: tx['txid'] for tx in got})
        self.assertEqual(2, len([tx for tx in got if tx['seq'] == 1]))
        self.assertTrue(all(tx == first[0] for tx in got if tx['seq'] == 1))
        self.assertEqual([a, c], delivery.consume(got))
        self.assertEqual([], delivery.outbox_rows(self.engine, self.stream))
        self.assertEqual(2, delivery.last_seq(self.engine, self.stream))
        self.assertEqual(0, delivery.pending(self.engine, self.stream))

    def test_unconfirmed_publish_is_republished_identically(self):
        """Numbered entries whose publish failed go again, unchanged."""
        self.conf.set_override('outbox_retention', 3600.0, 'oslo_publish')
        self.conf.set_override('max_message_bytes', 1024, 'oslo_publish')
        txids = delivery.write_entries(self.engine, self.stream, 3,
                                       size=600)
        self.useFixture(LoseConfirmation(2))
        r = self.make_relay()
        self.assertRaises(exceptions.DeliveryError, r.run_once)
        rows = delivery.outbox_rows(self.engine, self.stream)
        self.assertEqual([(txids[0], 1, True), (txids[1], 2, False),
                          (txids[2], 3, False)],
                         [(t, s, p is not None) for t, s, p in rows])
        self.assertEqual(1, delivery.last_seq(self.engine, self.stream))
        self.assertEqual(2, delivery.pending(self.engine, self.stream))
        self.assertEqual(2, self.metric('oslo_publish_relay_backlog'))
        self.assertEqual([1, 2], self.receiver.wait_seqs(2))
        lost = [tx for tx in self.receiver.transactions() if tx['seq'] == 2]
        txids += delivery.write_entries(self.engine, self.stream, 1,
                                        start=4)
        self.assertEqual(3, r.run_once())
        self.assertEqual([1, 2, 3, 4], self.receiver.wait_seqs(4))
        got = self.receiver.transactions()
        delivery.assert_gapless(self, got, 4)
        self.assertEqual(lost * 2, [tx for tx in got if tx['seq'] == 2])
        self.assertEqual(txids, delivery.consume(got))
        rows = delivery.outbox_rows(self.engine, self.stream)
        self.assertEqual([1, 2, 3, 4], [row.seq for row in rows])
        self.assertTrue(all(row.published_at is not None for row in rows))
        self.assertEqual(4, delivery.last_seq(self.engine, self.stream))
        self.assertEqual(0, self.metric('oslo_publish_relay_backlog'))

    def test_thread_is_woken_after_commit(self):
        """A started relay publishes entries after wake()."""
        self.conf.set_override('relay_poll_interval', 30.0, 'oslo_publish')
        r = self.make_relay(start=True)
        delivery.write_entries(self.engine, self.stream, 4)
        r.wake()
        self.assertEqual([1, 2, 3, 4], self.receiver.wait_seqs(4))
        base.wait_for(lambda: delivery.pending(self.engine, self.stream)
                      == 0)

    def test_thread_retries_until_broker_answers(self):
        """The thread backs off on a dead broker and counts its retries."""
        dead = oslo_messaging.get_notification_transport(
            self.conf, url=delivery.DEAD_BROKER)
        self.addCleanup(dead.cleanup)
        delivery.write_entries(self.engine, self.stream, 1)
        r = self.make_relay(transport=dead, start=True)
        base.wait_for(lambda: self.metric(
            'oslo_publish_broker_retries_total') >= 2, 20)
        r.stop()
        self.assertEqual(1, delivery.pending(self.engine, self.stream))
        self.make_relay(start=True).wake()
        self.assertEqual([1], self.receiver.wait_seqs(1))

    def test_heartbeat_carries_current_seq(self):
        """An idle relay sends heartbeats with the stream's last seq."""
        self.conf.set_override('heartbeat_interval', 0.2, 'oslo_publish')
        self.conf.set_override('signing_key', 'k3y', 'oslo_publish')
        delivery.write_entries(self.engine, self.stream, 2)
        self.make_relay(start=True)
        base.wait_for(lambda: [h for h in self.receiver.heartbeats()
                               if h['seq'] == 2])
        beat = self.receiver.heartbeats()[-1]
        wire.validate(beat)
        wire.check_signature(beat, 'k3y')
        self.assertEqual(self.stream, beat['stream'])

    def test_messages_are_signed(self):
        """With a signing key every delta carries a valid signature."""
        self.conf.set_override('signing_key', 's3cret', 'oslo_publish')
        delivery.write_entries(self.engine, self.stream, 2)
        self.make_relay().run_once()
        self.receiver.wait_seqs(2)
        for message in self.receiver.deltas():
            wire.check_signature(message, 's3cret')
            self.assertRaises(wire.WireError, wire.check_signature,
                              message, 'other')

    def test_split_at_max_message_bytes(self):
        """Batches are split so no message exceeds max_message_bytes."""
        self.conf.set_override('max_message_bytes', 1024, 'oslo_publish')
        self.conf.set_override('batch_size', 10, 'oslo_publish')
        delivery.write_entries(self.engine, self.stream, 6, size=300)
        delivery.write_entries(self.engine, self.stream, 1, start=7,
                               size=3000)
        self.assertEqual(7, self.make_relay().run_once())
        self.assertEqual(list(range(1, 8)), self.receiver.wait_seqs(7))
        sizes = [(len(m['transactions']), wire.encoded_size(m))
                 for m in self.receiver.deltas()]
        self.assertGreater(len(sizes), 3)
        for count, size in sizes:
            if count > 1:
                self.assertLessEqual(size, 1024)

    def test_two_relays_make_one_sequence(self):
        """Two relays with separate engines give one gapless sequence."""
        other = sa.create_engine(self.db.url)
        self.addCleanup(other.dispose)
        relays = [self.make_relay(start=True),
                  self.make_relay(engine=other, start=True)]
        txids = []

        def write(start):
            got = delivery.write_entries(self.engine, self.stream, 10,
                                         start=start)
            txids.extend(got)
            for r in relays:
                r.wake()

        writers = [threading.Thread(target=write, args=(n * 100,))
                   for n in range(3)]
        for w in writers:
            w.start()
        for w in writers:
            w.join()
        self.receiver.wait_seqs(30)
        got = self.receiver.transactions()
        delivery.assert_gapless(self, got, 30)
        self.assertEqual(sorted(txids), sorted({tx['txid'] for tx in got}))
        base.wait_for(lambda: delivery.pending(self.engine, self.stream)
                      == 0)


class _CommandTests(delivery.RelayTestMixin):

    def config_file(self):
        path = os.path.join(self.tmpdir, 'host.conf')
        with open(path, 'w') as f:
            f.write('[DEFAULT]\ntransport_url = %s\ncontrol_exchange = %s\n'
                    '[database]\nconnection = %s\n'
                    '[oslo_publish]\nstream = %s\ntopics = %s\n'
                    'relay_poll_interval = 0.05\nsnapshot_server = false\n'
                    '[oslo_messaging_rabbit]\namqp_durable_queues = true\n'
                    % (self.tf.url, self.tf.exchange, self.db.url,
                       self.stream, self.tf.topic))
        return path

    def status(self):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = status.main(['--config-file', self.config_file()])
        return code, out.getvalue(), err.getvalue()

    def test_relay_retries_start_checks_when_the_connection_breaks(self):
        """A session killed while the relay starts: retried, then exit 2."""
        from oslo_db import exception as db_exc

        from oslo_publish.cmd import relay as relay_cmd
        from oslo_publish import schema
        outbox.metadata.create_all(self.engine)
        resolve = schema.resolve_tables
        failures = []

        def flaky(*args, **kwargs):
            if len(failures) < self.fail_times:
                failures.append(1)
                raise db_exc.DBConnectionError(Exception('killed'))
            return resolve(*args, **kwargs)
        ran = []
        self.useFixture(fixtures.MonkeyPatch(
            'oslo_publish.cmd.relay.schema.resolve_tables', flaky))
        self.useFixture(fixtures.MonkeyPatch(
            'oslo_publish.cmd.relay.run', lambda *a: ran.append(a)))
        self.useFixture(fixtures.MonkeyPatch(
            'oslo_publish.cmd.relay.START_RETRY_DELAY', 0.0))
        self.fail_times = 2
        self.assertEqual(0, relay_cmd.main(['--config-file',
                                            self.config_file()]))
        self.assertEqual((2, 1), (len(failures), len(ran)))
        failures[:] = []
        self.fail_times = relay_cmd.START_ATTEMPTS
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = relay_cmd.main(['--config-file', self.config_file()])
        self.assertEqual(2, code)
        self.assertIn('cannot reach the database: killed', err.getvalue())
        self.assertEqual(1, len(ran))

    def test_status_reports_each_stream(self):
        """Status shows last seq, backlog, oldest age and retained rows."""
        self.conf.set_override('outbox_retention', 3600.0, 'oslo_publish')
        delivery.write_entries(self.engine, self.stream, 2)
        self.make_relay().run_once()
        delivery.write_entries(self.engine, self.stream, 3, start=3)
        code, out, err = self.status()
        self.assertEqual((0, ''), (code, err))
        header, line = out.splitlines()
        self.assertEqual(['STREAM', 'LAST_SEQ', 'BACKLOG',
                          'OLDEST_PENDING_S', 'DELIVERED_RETAINED',
                          'LOG_RETAINED_BYTES'],
                         header.split())
        name, last, backlog, age, retained, log_bytes = line.split()
        self.assertEqual((self.stream, '2', '3', '2', '-'),
                         (name, last, backlog, retained, log_bytes))
        self.assertGreaterEqual(float(age), 0.0)

    def test_status_fails_clearly_without_tables(self):
        """Missing tables give a non-zero exit and a one-line message."""
        outbox.metadata.drop_all(self.engine)
        code, out, err = self.status()
        self.assertEqual(1, code)
        self.assertEqual('', out)
        self.assertEqual(1, len(err.splitlines()))
        self.assertIn('oslo-publish-manage', err)

    def start_relay_process(self):
        """Run oslo-publish-relay; return (process, its metrics URL)."""
        with socket.socket() as sock:
            sock.bind(('127.0.0.1', 0))
            port = sock.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, '-m', 'oslo_publish.cmd.relay',
             '--config-file', self.config_file(),
             '--metrics-port', str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(proc.wait)
        self.addCleanup(proc.kill)
        url = 'http://127.0.0.1:%d/metrics' % port
        base.wait_for(lambda: self.scrape(url) is not None, 60)
        return proc, url

    @staticmethod
    def scrape(url):
        try:
            return urllib.request.urlopen(url, timeout=5).read().decode(
                'utf-8')
        except OSError:
            return None

    def test_relay_process_and_thread_share_one_sequence(self):
        """A relay process and a relay thread make one sequence."""
        self.conf.set_override('batch_size', 2, 'oslo_publish')
        proc, url = self.start_relay_process()
        self.make_relay(start=True)
        txids = []
        for start in range(1, 41, 4):
            txids.extend(delivery.write_entries(self.engine, self.stream, 4,
                                                start=start))
            base.wait_for(lambda: delivery.pending(self.engine,
                                                   self.stream) == 0)
        self.receiver.wait_seqs(40, 60)
        got = self.receiver.transactions()
        delivery.assert_gapless(self, got, 40)
        self.assertEqual(sorted(txids), sorted({tx['txid'] for tx in got}))
        sample = 'oslo_publish_deltas_published_total{stream="%s"} ' \
            % self.stream
        remote = [float(line.split()[-1])
                  for line in self.scrape(url).splitlines()
                  if line.startswith(sample)]
        local = self.metric('oslo_publish_deltas_published_total')
        self.assertEqual(40, sum(remote) + local)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(0, proc.wait(timeout=30))


class TestCommandsSQLite(_CommandTests, base.BackendTestCase):
    BACKEND = 'sqlite'


class TestCommandsMySQL(_CommandTests, base.BackendTestCase):
    BACKEND = 'mysql'


class TestCommandsPostgreSQL(_CommandTests, base.BackendTestCase):
    BACKEND = 'postgresql'

    def test_relay_command_publishes_and_stops_on_sigterm(self):
        """oslo-publish-relay publishes the outbox and exits 0 on SIGTERM."""
        delivery.write_entries(self.engine, self.stream, 3)
        proc, url = self.start_relay_process()
        self.assertEqual([1, 2, 3], self.receiver.wait_seqs(3))
        delivery.write_entries(self.engine, self.stream, 1, start=4)
        self.assertEqual([1, 2, 3, 4], self.receiver.wait_seqs(4))
        sample = 'oslo_publish_last_seq{stream="%s"} 4.0' % self.stream
        base.wait_for(lambda: sample in self.scrape(url))
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(0, proc.wait(timeout=30))


class TestRelaySQLite(_RelayTests, base.BackendTestCase):
    BACKEND = 'sqlite'


class TestRelayPostgreSQL(_RelayTests, base.BackendTestCase):
    BACKEND = 'postgresql'

    def test_claim_leaves_out_an_entry_numbered_meanwhile(self):
        """The numbering statement never leaves a hole in the numbers.

        Another transaction numbers a pending entry while the relay's
        numbering waits for that row: the entry is left out and the
        others get consecutive numbers (the statement locks the rows
        before it ranks them). The batch, read under the lock after the
        numbering committed, has the other entry with its number.
        """
        delivery.write_entries(self.engine, self.stream, 3)
        o = outbox.outbox
        r = self.make_relay()
        r.stream_lock.keep = True
        with self.engine.connect() as other:
            tx = other.begin()
            ids = other.execute(sa.select(o.c.id).where(
                o.c.stream == self.stream).order_by(o.c.id)).scalars().all()
            other.execute(o.update().where(o.c.id == ids[1])
                          .values(seq=99))
            result = {}

            def cycle():
                result['done'] = r.run_once(check=False)
            thread = threading.Thread(target=cycle)
            thread.start()
            # Wait until the claim waits for the row lock of ids[1].
            base.wait_for(lambda: self._waiting_for_lock())
            tx.commit()
            thread.join(30)
        self.assertEqual(3, result['done'])
        self.assertEqual([1, 2, 99], self.receiver.wait_seqs(3))
        self.assertEqual([], delivery.outbox_rows(self.engine, self.stream))
        self.assertEqual(99, delivery.last_seq(self.engine, self.stream))

    def _waiting_for_lock(self):
        with self.engine.connect() as conn:
            return bool(conn.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE "
                "datname = current_database() AND wait_event_type = 'Lock'"
                " AND query LIKE '%locked AS (%'")).scalar())


class TestRelayMySQL(_RelayTests, base.BackendTestCase):
    BACKEND = 'mysql'
