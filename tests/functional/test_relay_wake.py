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


"""The relay is woken by commits, works in few statements, keeps epochs."""

import datetime
import logging
import threading
import time

import fixtures
import oslo_messaging
import sqlalchemy as sa
from sqlalchemy import orm

from oslo_publish import outbox
from oslo_publish import relay
from oslo_publish.relay import wake
from oslo_publish import snapshot
from oslo_publish import wire
from tests import base
from tests.functional import delivery


class _WakeTests(delivery.RelayTestMixin):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.FakeLogger(level=logging.INFO))

    def relay(self, **kw):
        r = self.make_relay(**kw)
        self.addCleanup(r.stop)
        return r

    def test_woken_relay_sends_without_a_fixed_window(self):
        """An idle relay starts its cycle at once when a commit wakes it."""
        self.conf.set_override('relay_poll_interval', 30.0, 'oslo_publish')
        r = self.relay(start=True)
        starts = []
        real = r.run_once

        def run_once(*args, **kwargs):
            starts.append(time.monotonic())
            return real(*args, **kwargs)
        r.run_once = run_once
        r.wake()  # from now on it waits for wake-ups, not fast polls
        base.wait_for(lambda: r.idle.is_set() and starts)
        gaps = []
        for n in range(1, 11):
            base.wait_for(r.idle.is_set)
            seen = len(starts)
            delivery.write_entries(self.engine, self.stream, 1, start=n)
            woke = time.monotonic()
            r.wake()
            self.receiver.wait_seqs(n)
            gaps.append(starts[seen] - woke)
        gaps.sort()
        # A fixed 50 ms window from the previous cycle's start made these
        # tens of milliseconds; woken while idle, it is thread wake-up time.
        self.assertLess(gaps[len(gaps) // 2], 0.02, gaps)

    def test_commits_during_a_cycle_make_one_more_cycle(self):
        """Entries committed while the relay is busy are all published."""
        self.conf.set_override('relay_poll_interval', 30.0, 'oslo_publish')
        self.conf.set_override('batch_size', 100, 'oslo_publish')
        r = self.relay(start=True)
        for n in range(1, 41):
            delivery.write_entries(self.engine, self.stream, 1, start=n)
            r.wake()
        self.assertEqual(list(range(1, 41)), self.receiver.wait_seqs(40))
        self.assertLess(len(self.receiver.deltas()), 40 + 1)

    def test_cycle_statements(self):
        """A cycle of pending entries runs at most 6 statements on the host."""
        if self.engine.dialect.name == 'sqlite':
            self.skipTest('SQLite writes in short transactions of its own')
        self.conf.set_override('batch_size', 100, 'oslo_publish')
        r = self.relay()
        delivery.write_entries(self.engine, self.stream, 1)
        r.stream_lock.keep = True  # as while its thread runs
        r.run_once()  # makes the stream row and the kept connections
        delivery.write_entries(self.engine, self.stream, 3, start=2)
        statements = []

        def count(conn, cursor, statement, *args):
            statements.append(statement.split()[0].upper())
        sa.event.listen(self.engine, 'before_cursor_execute', count)
        self.addCleanup(sa.event.remove, self.engine,
                        'before_cursor_execute', count)
        self.assertEqual(3, r.run_once(check=False))
        self.assertEqual([1, 2, 3, 4], self.receiver.wait_seqs(4))
        self.assertLessEqual(len(statements), 6, statements)

    def test_delta_and_heartbeat_carry_the_stream_epoch(self):
        """Every delta and heartbeat carries the epoch of the stream row."""
        self.conf.set_override('heartbeat_interval', 0.2, 'oslo_publish')
        r = self.relay(start=True)
        delivery.write_entries(self.engine, self.stream, 2)
        r.wake()
        self.receiver.wait_seqs(2)
        base.wait_for(lambda: self.receiver.heartbeats())
        epoch = relay.read_epoch(self.engine, self.stream)
        self.assertRegex(epoch, '^[0-9a-f]{32}$')
        self.assertEqual(epoch, r.epoch)
        for message in self.receiver.deltas() + self.receiver.heartbeats():
            self.assertEqual(epoch, wire.message_epoch(message))

    def test_snapshot_open_answer_carries_the_epoch(self):
        """snapshot_open answers with the stream's epoch and watermark."""
        rpc = oslo_messaging.get_rpc_transport(self.conf)
        self.addCleanup(rpc.cleanup)
        r = self.relay()
        delivery.write_entries(self.engine, self.stream, 2)
        server = snapshot.SnapshotServer(self.conf, self.engine, self.stream,
                                         {}, r, rpc, self.metrics)
        answer = server.open([])
        self.assertEqual(2, answer['watermark'])
        self.assertRegex(answer['epoch'], '^[0-9a-f]{32}$')
        self.assertEqual(relay.read_epoch(self.engine, self.stream),
                         answer['epoch'])
        with r.lock_for_snapshot() as mark:
            self.assertEqual(answer['epoch'], mark.epoch)

    def test_last_seq_going_back_renews_the_epoch(self):
        """A restored database (last_seq lower) gets a new epoch."""
        r = self.relay()
        delivery.write_entries(self.engine, self.stream, 3)
        r.run_once()
        self.receiver.wait_seqs(3)
        old = relay.read_epoch(self.engine, self.stream)
        with self.engine.begin() as conn:  # as a restore would leave it
            conn.execute(outbox.streams.update().values(last_seq=1))
        delivery.write_entries(self.engine, self.stream, 1, start=4)
        r.run_once()
        new = relay.read_epoch(self.engine, self.stream)
        self.assertNotEqual(old, new)
        base.wait_for(lambda: any(wire.message_epoch(m) == new
                                  for m in self.receiver.deltas()))
        renewed = [m for m in self.receiver.deltas()
                   if wire.message_epoch(m) == new]
        self.assertEqual(2, renewed[0]['first_seq'])

    def test_rebuilt_database_gets_a_new_stream_row_and_epoch(self):
        """A relay whose stream row vanished makes a new one, new epoch."""
        r = self.relay()
        delivery.write_entries(self.engine, self.stream, 1)
        r.run_once()
        old = relay.read_epoch(self.engine, self.stream)
        with self.engine.begin() as conn:
            conn.execute(outbox.streams.delete())
        delivery.write_entries(self.engine, self.stream, 1, start=2)
        self.assertRaises(RuntimeError, r.run_once)
        self.assertEqual(1, r.run_once())
        self.assertNotEqual(old, relay.read_epoch(self.engine, self.stream))


class TestWakeSQLite(_WakeTests, base.BackendTestCase):
    BACKEND = 'sqlite'


class TestWakeMySQL(_WakeTests, base.BackendTestCase):
    BACKEND = 'mysql'


class TestWakePostgreSQL(_WakeTests, base.BackendTestCase):
    BACKEND = 'postgresql'

    def test_cycle_round_trips(self):
        """PostgreSQL: a cycle is 2 round trips on the host database.

        The first numbers the next entries under the lock in a
        transaction of its own (committed, its WAL flushed), then begins
        the lock transaction L, which takes the lock again and reads the
        batch; the second marks the batch and commits L.
        """
        self.conf.set_override('batch_size', 100, 'oslo_publish')
        r = self.relay()
        delivery.write_entries(self.engine, self.stream, 1)
        r.stream_lock.keep = True  # as while its thread runs
        r.run_once()
        delivery.write_entries(self.engine, self.stream, 3, start=2)
        statements, commits = [], []

        def count(conn, cursor, statement, *args):
            statements.append(' '.join(statement.split()))

        def commit(conn):
            if not conn.connection.dbapi_connection.autocommit:
                commits.append(conn)
        for name, hook in (('before_cursor_execute', count),
                           ('commit', commit)):
            sa.event.listen(self.engine, name, hook)
            self.addCleanup(sa.event.remove, self.engine, name, hook)
        self.assertEqual(3, r.run_once(check=False))
        self.assertEqual([1, 2, 3, 4], self.receiver.wait_seqs(4))
        self.assertEqual(2, len(statements), statements)
        self.assertTrue(statements[0].startswith('BEGIN'), statements)
        numbering, lock = statements[0].split('; COMMIT; ')
        self.assertIn('UPDATE', numbering)
        self.assertIn('FOR UPDATE', lock)
        # The marking does not wait for its WAL flush; the numbering does.
        self.assertNotIn('synchronous_commit', numbering)
        self.assertIn('synchronous_commit TO OFF', lock)
        self.assertIn('DELETE', statements[1])
        self.assertTrue(statements[-1].endswith('; COMMIT'), statements)
        self.assertEqual([], commits)  # none of the driver's own
        self.assertEqual([], delivery.outbox_rows(self.engine, self.stream))
        self.assertEqual(4, delivery.last_seq(self.engine, self.stream))

    def _after_publish(self, r, effect):
        """Run ``effect`` after each publish of ``r``; returns the undo."""
        real = r._publisher.publish

        def publish(*args, **kwargs):
            real(*args, **kwargs)
            effect()
        r._publisher.publish = publish
        return lambda: setattr(r._publisher, 'publish', real)

    def _count_statements(self):
        statements = []

        def count(conn, cursor, statement, *args):
            statements.append(' '.join(statement.split()))
        sa.event.listen(self.engine, 'before_cursor_execute', count)
        self.addCleanup(sa.event.remove, self.engine,
                        'before_cursor_execute', count)
        return statements

    def test_busy_cycle_marks_with_the_next_one(self):
        """A wake-up during a cycle: its marking goes with the next cycle.

        The marking and L's COMMIT are sent at the head of the next
        cycle's first round trip (one round trip per busy cycle fewer);
        going idle commits it.
        """
        r = self.relay()
        r.stream_lock.keep = True  # as while its thread runs
        delivery.write_entries(self.engine, self.stream, 1)
        self.assertEqual(1, r.run_once(check=False, fold=True))
        delivery.write_entries(self.engine, self.stream, 1, start=2)
        # A commit lands while the cycle waits for the broker.
        undo = self._after_publish(r, r.wake)
        statements = self._count_statements()
        self.assertEqual(1, r.run_once(check=False, fold=True))
        self.assertEqual(1, len(statements), statements)
        self.assertTrue(r.stream_lock.deferred)
        # Not committed yet: another session still sees the entry.
        self.assertEqual([2], [row.seq for row in delivery.outbox_rows(
            self.engine, self.stream)])
        undo()
        delivery.write_entries(self.engine, self.stream, 1, start=3)
        del statements[:]
        self.assertEqual(1, r.run_once(check=False, fold=True))
        self.assertEqual([1, 2, 3], self.receiver.wait_seqs(3))
        self.assertEqual(2, len(statements), statements)
        self.assertTrue(statements[0].startswith('WITH confirmed'),
                        statements)
        self.assertIn('; COMMIT; BEGIN', statements[0])
        self.assertFalse(r.stream_lock.deferred)
        self.assertEqual([], delivery.outbox_rows(self.engine, self.stream))
        self.assertEqual(3, delivery.last_seq(self.engine, self.stream))

    def test_idle_relay_commits_a_deferred_marking(self):
        """The thread commits a marking left for a next cycle when idle."""
        r = self.relay()
        r.stream_lock.keep = True
        delivery.write_entries(self.engine, self.stream, 2)
        # As if a commit came, without waking.
        undo = self._after_publish(
            r, lambda: setattr(r._waker, 'pending', True))
        self.assertEqual(2, r.run_once(check=False, fold=True))
        self.assertTrue(r.stream_lock.deferred)
        undo()
        r.start()
        base.wait_for(
            lambda: not delivery.outbox_rows(self.engine, self.stream))
        self.assertFalse(r.stream_lock.deferred)
        self.assertEqual(2, delivery.last_seq(self.engine, self.stream))
        self.assertEqual([1, 2], self.receiver.wait_seqs(2))

    def test_lost_deferred_marking_republishes_same_numbers(self):
        """A deferred marking lost with L's session costs a republish.

        The entries go out again with their numbers and the same epoch
        (last_seq did not go back as far as the relay knows).
        """
        r = self.relay()
        r.stream_lock.keep = True
        delivery.write_entries(self.engine, self.stream, 2)
        undo = self._after_publish(
            r, lambda: setattr(r._waker, 'pending', True))
        self.assertEqual(2, r.run_once(check=False, fold=True))
        epoch = r.epoch
        undo()
        # The session died: the marking is never sent on another one.
        r.stream_lock._conns['explicit'].invalidate()
        self.assertEqual(2, r.run_once(check=False))
        self.assertFalse(r.stream_lock.deferred)
        base.wait_for(lambda: len(self.receiver.seqs()) >= 4)
        self.assertEqual([1, 1, 2, 2], sorted(self.receiver.seqs()))
        self.assertEqual(epoch, r.epoch)
        self.assertEqual(2, delivery.last_seq(self.engine, self.stream))

    def test_new_epoch_waits_for_its_flush(self):
        """PostgreSQL: L renewing the epoch commits synchronously."""
        r = self.relay()
        r.stream_lock.keep = True
        delivery.write_entries(self.engine, self.stream, 1)
        r.run_once()
        statements = self._count_statements()
        with r.holding() as held:
            held.epoch = r.stream_lock.renew_epoch(held.conn)
            setting = held.conn.exec_driver_sql(
                'SHOW synchronous_commit').scalar()
        self.assertEqual('on', setting)
        self.assertIn('synchronous_commit TO OFF', statements[0])
        self.assertEqual(held.epoch, relay.read_epoch(self.engine,
                                                      self.stream))

    def test_failed_cycle_rolls_back_and_frees_the_lock(self):
        """PostgreSQL: an error in a hold rolls L back; the lock is free."""
        r = self.relay()
        r.stream_lock.keep = True
        delivery.write_entries(self.engine, self.stream, 1)
        r.run_once()
        with self.engine.connect() as conn:
            before = conn.execute(sa.select(outbox.streams.c.updated_at)
                                  .where(outbox.streams.c.stream
                                         == self.stream)).scalar()

        def fail():
            with r.holding() as held:
                r.stream_lock.set_last_seq(held.conn, 99)
                raise RuntimeError('boom')
        self.assertRaises(RuntimeError, fail)
        self.assertEqual(1, delivery.last_seq(self.engine, self.stream))
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SET lock_timeout = '2s'")
            streams = outbox.streams
            row = conn.execute(
                sa.select(streams.c.last_seq, streams.c.updated_at)
                .where(streams.c.stream == self.stream)
                .with_for_update()).one()
            conn.rollback()
        self.assertEqual((1, before), tuple(row))
        delivery.write_entries(self.engine, self.stream, 1, start=2)
        self.assertEqual(1, r.run_once())
        self.assertEqual([1, 2], self.receiver.wait_seqs(2))

    def test_standalone_relay_is_woken_by_notify(self):
        """A relay with listen=True publishes at the NOTIFY of a commit."""
        self.conf.set_override('relay_poll_interval', 30.0, 'oslo_publish')
        self.conf.set_override('heartbeat_interval', 60.0, 'oslo_publish')
        r = self.relay()
        r.run_once()
        standalone = relay.Relay(self.conf, self.engine, self.stream, {},
                                 r._publisher, self.metrics, listen=True)
        self.addCleanup(standalone.stop)
        standalone.start()
        base.wait_for(standalone.idle.is_set)  # waits on LISTEN now
        # The sink's INSERT carries the NOTIFY (one round trip).
        sink = outbox.OutboxSink(self.stream, notify=True)
        statements = []

        me = threading.get_ident()

        def note(conn, cursor, statement, *args):
            if threading.get_ident() == me:  # not the relay's
                statements.append(statement)
        sa.event.listen(self.engine, 'before_cursor_execute', note)
        self.addCleanup(sa.event.remove, self.engine,
                        'before_cursor_execute', note)
        with orm.Session(self.engine) as session:
            sink.stage(session, 'tx-notify', datetime.datetime.now(
                datetime.timezone.utc), [delivery.item_change(1, 'n')],
                {'items': delivery.ITEMS_HEADER})
            session.commit()
        self.assertEqual(1, len(statements))
        self.assertIn('pg_notify', statements[0])
        began = time.monotonic()
        self.assertEqual([1], self.receiver.wait_seqs(1, timeout=10))
        self.assertLess(time.monotonic() - began, 5.0)
        self.assertEqual(['tx-notify'],
                         [tx['txid'] for tx in self.receiver.transactions()])

    def test_notify_statement_still_wakes(self):
        """The plain NOTIFY statement (other writers' way) wakes too."""
        self.conf.set_override('relay_poll_interval', 30.0, 'oslo_publish')
        self.conf.set_override('heartbeat_interval', 60.0, 'oslo_publish')
        r = self.relay()
        r.run_once()
        standalone = relay.Relay(self.conf, self.engine, self.stream, {},
                                 r._publisher, self.metrics, listen=True)
        self.addCleanup(standalone.stop)
        standalone.start()
        base.wait_for(standalone.idle.is_set)
        with self.engine.begin() as conn:
            row = delivery.outbox_row(self.stream,
                                      [delivery.item_change(1, 'n')])
            conn.execute(outbox.outbox.insert().values(**row))
            conn.execute(sa.text(wake.notify_statement(self.stream)))
        self.assertEqual([1], self.receiver.wait_seqs(1, timeout=10))
