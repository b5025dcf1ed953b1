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

"""Pure logic of the relay and the snapshot server."""

import datetime
import fcntl
import math
import os
import threading
import time
import types
from unittest import mock

import fixtures
from oslo_config import cfg
import sqlalchemy as sa

from oslo_publish import options
from oslo_publish import relay
from oslo_publish.relay import pacing
from oslo_publish.relay import wake
from oslo_publish import snapshot
from oslo_publish import wire
from tests import base

HEADER = {'pk': ['id'], 'version': 'v1'}


def _entry(seq, size, header=HEADER):
    tx = {'seq': seq, 'txid': 't%d' % seq,
          'committed_at': '2026-01-01T00:00:00+00:00',
          'changes': [{'table': 'items', 'op': 'insert', 'key': [seq],
                       'after': {'id': seq, 'pad': 'x' * size}}]}
    return (seq, tx, {'items': header})


class TestSplitMessages(base.TestCase):

    def _messages(self, entries, limit, key=None):
        return [wire.delta_message('s', [tx for _, tx in group], tables, key)
                for group, tables in relay.split_messages(entries, 's', key,
                                                          limit)]

    def test_small_batch_is_one_message(self):
        """Transactions that fit share one message, in seq order."""
        groups = relay.split_messages([_entry(n, 10) for n in (1, 2, 3)],
                                      's', None, 10000)
        self.assertEqual([[1, 2, 3]], [[i for i, _ in g] for g, _ in groups])
        self.assertEqual({'items': HEADER}, groups[0][1])

    def test_no_message_exceeds_the_limit(self):
        """Split messages stay within the limit, signed or not."""
        for key in (None, 'secret'):
            messages = self._messages([_entry(n, 300) for n in range(1, 30)],
                                      2048, key)
            self.assertGreater(len(messages), 4)
            for message in messages:
                wire.validate(message)
                self.assertLessEqual(wire.encoded_size(message), 2048)
            seqs = [tx['seq'] for m in messages for tx in m['transactions']]
            self.assertEqual(list(range(1, 30)), seqs)

    def test_oversized_transaction_travels_alone(self):
        """A transaction bigger than the limit gets a message of its own."""
        groups = relay.split_messages(
            [_entry(1, 10), _entry(2, 5000), _entry(3, 10)], 's', None, 1024)
        self.assertEqual([[1], [2], [3]],
                         [[i for i, _ in g] for g, _ in groups])

    def test_schema_version_change_starts_a_message(self):
        """Two versions of one table never share a tables header."""
        other = {'pk': ['id'], 'version': 'v2'}
        groups = relay.split_messages(
            [_entry(1, 1), _entry(2, 1, other), _entry(3, 1, other)],
            's', None, 100000)
        self.assertEqual([[1], [2, 3]],
                         [[i for i, _ in g] for g, _ in groups])
        self.assertEqual('v2', groups[1][1]['items']['version'])


class TestPayloadBound(base.TestCase):
    """The size bounds that let a small batch skip measuring."""

    PAYLOADS = [
        {'changes': [{'table': 't', 'key': [1], 'after': {'v': 'plain'}}]},
        {'changes': [{'table': 't', 'key': [1], 'after': {'v': 'caf\xe9'}}]},
        {'changes': [{'table': 't', 'key': [1],
                      'after': {'v': '\U0001f600' * 20}}]},
        {'changes': [{'table': 't', 'key': [1], 'after': {'v': '\x7f' * 9}}]},
    ]

    def _texts(self, data):
        import json
        # As the library writes it, and as other writers might.
        yield json.dumps(data, separators=(',', ':'))
        yield json.dumps(data, ensure_ascii=False, separators=(',', ':'))

    def _tx_size(self, text):
        import json
        tx = {'seq': 2 ** 62, 'txid': 'x' * 36,
              'committed_at': '2026-01-01T00:00:00.123456+00:00',
              'changes': json.loads(text)['changes']}
        return wire.encoded_size(tx) + 1

    def test_bound_holds_however_the_payload_was_written(self):
        """payload_bound is never below the re-encoded transaction."""
        texts = [text for data in self.PAYLOADS for text in self._texts(data)]
        # Numbers in exponent form grow when Python writes them.
        texts.append('{"changes":[{"table":"t","key":[1],'
                     '"after":{"a":1e15,"b":1E16,"c":12345678901234567.0}}]}')
        for text in texts:
            self.assertLessEqual(self._tx_size(text),
                                 relay.publishing.payload_bound(
                                     text, 'x' * 36), text)

    def test_bounded_batch_splits_as_the_measured_one(self):
        """With bounds, the groups are the ones measuring gives."""
        import json
        entries = [_entry(n, 10) for n in (1, 2, 3)]
        bounds = []
        for _, tx, headers in entries:
            text = json.dumps({'changes': tx['changes'], 'tables': headers},
                              separators=(',', ':'))
            bounds.append(relay.publishing.payload_bound(text, tx['txid']))
        for limit in (100000, 1024):
            self.assertEqual(
                relay.split_messages(entries, 's', 'k', limit),
                relay.split_messages(entries, 's', 'k', limit, bounds))
        other = {'pk': ['id'], 'version': 'v2'}
        mixed = entries[:2] + [_entry(3, 1, other)]
        self.assertEqual(
            [[1, 2], [3]],
            [[i for i, _ in g] for g, _ in relay.split_messages(
                mixed, 's', None, 100000, bounds)])


class TestNumbering(base.TestCase):

    def test_next_seq_follows_the_highest_number_given(self):
        """The next number is max(last_seq, highest assigned) + 1."""
        self.assertEqual(1, relay.next_seq(0, []))
        self.assertEqual(1, relay.next_seq(None, [None]))
        self.assertEqual(8, relay.next_seq(7, [None]))
        self.assertEqual(10, relay.next_seq(7, [9, 8]))
        self.assertEqual(8, relay.next_seq(7, [5]))


class TestSQLiteLockFile(base.TestCase):

    def test_lock_file_beside_the_database_file(self):
        """A file database gets a per-stream lock file beside it."""
        engine = sa.create_engine('sqlite:////srv/db/host.sqlite')
        self.assertEqual('/srv/db/host.sqlite.oslo-publish-nova_a.lock',
                         relay.lock_file_path(engine, 'nova/a'))
        self.assertIsNone(relay.lock_file_path(
            sa.create_engine('sqlite://'), 's'))
        self.assertIsNone(relay.lock_file_path(
            sa.create_engine('sqlite:///:memory:'), 's'))
        self.assertIsNone(relay.lock_file_path(
            sa.create_engine('postgresql+psycopg2://u@h/d'), 's'))

    def test_file_lock_excludes_a_second_holder(self):
        """While the flock is held, another open file cannot take it."""
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'db.oslo-publish-s.lock')

        def try_lock():
            fd = os.open(path, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            finally:
                os.close(fd)
            return True

        with relay._file_lock(path):
            self.assertFalse(try_lock())
        self.assertTrue(try_lock())


class TestBackoff(base.TestCase):

    def test_grows_and_is_capped_with_jitter(self):
        """Delays double from 0.1 s, stay under the cap, are jittered."""
        first = [relay.backoff(1, 30.0) for _ in range(50)]
        self.assertTrue(all(0.05 <= d <= 0.1 for d in first))
        late = [relay.backoff(40, 2.0) for _ in range(50)]
        self.assertTrue(all(1.0 <= d <= 2.0 for d in late))
        self.assertGreater(len(set(late)), 1)


class TestTimestamps(base.TestCase):

    def test_naive_outbox_time_is_utc(self):
        """Naive outbox timestamps are read as UTC."""
        naive = datetime.datetime(2026, 1, 2, 3, 4, 5, 6)
        self.assertEqual('2026-01-02T03:04:05.000006+00:00',
                         relay.as_utc(naive).isoformat())
        aware = datetime.datetime(2026, 1, 2, 5, 4, 5, tzinfo=(
            datetime.timezone(datetime.timedelta(hours=2))))
        self.assertEqual('2026-01-02T03:04:05+00:00',
                         relay.as_utc(aware).isoformat())


class TestKeyset(base.TestCase):

    def test_composite_key_condition(self):
        """The keyset condition is (a > x) OR (a = x AND b > y)."""
        table = sa.Table('t', sa.MetaData(), sa.Column('a', sa.Integer),
                         sa.Column('b', sa.String))
        clause = snapshot._after_clause([table.c.a, table.c.b], (1, 'k'))
        text = str(clause.compile(compile_kwargs={'literal_binds': True}))
        self.assertEqual("t.a > 1 OR t.a = 1 AND t.b > 'k'", text)

    def test_keyset_pages_cover_every_row_once(self):
        """Paging with the condition visits every row once, in order."""
        engine = sa.create_engine('sqlite://')
        table = sa.Table('t', sa.MetaData(),
                         sa.Column('a', sa.Integer, primary_key=True),
                         sa.Column('b', sa.String(8), primary_key=True))
        table.metadata.create_all(engine)
        rows = [{'a': a, 'b': b} for a in (3, 1, 2) for b in 'zyx']
        with engine.begin() as conn:
            conn.execute(table.insert(), rows)
        seen, key = [], None
        with engine.connect() as conn:
            while True:
                query = sa.select(table).order_by(table.c.a,
                                                  table.c.b).limit(2)
                if key is not None:
                    query = query.where(snapshot._after_clause(
                        [table.c.a, table.c.b], key))
                page = conn.execute(query).all()
                if not page:
                    break
                seen.extend(tuple(r) for r in page)
                key = tuple(page[-1])
        self.assertEqual(sorted((r['a'], r['b']) for r in rows), seen)


class TestWaker(base.TestCase):

    def setUp(self):
        super().setUp()
        self.waker = wake.Waker()
        self.addCleanup(self.waker.close)

    def test_wake_ends_a_wait_and_drain_forgets_it(self):
        """A wake-up ends the next wait at once; drain() consumes it."""
        self.assertEqual([], self.waker.wait(0))
        self.waker.wake()
        self.waker.wake()
        self.assertNotEqual([], self.waker.wait(5))
        self.assertTrue(self.waker.drain())
        self.assertFalse(self.waker.drain())
        self.assertEqual([], self.waker.wait(0))

    def test_wake_from_a_forked_child_reaches_the_parent(self):
        """A child forked after the waker was made wakes the parent."""
        pid = os.fork()
        if pid == 0:  # child
            try:
                self.waker.wake()
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        self.assertNotEqual([], self.waker.wait(5))
        self.assertFalse(self.waker.foreign)
        self.assertTrue(self.waker.drain())
        # The relay no longer trusts its own process's writer activity.
        self.assertTrue(self.waker.foreign)

    def test_own_wakes_are_not_foreign(self):
        """Wake-ups from the waker's own process leave foreign unset."""
        self.waker.wake()
        self.assertTrue(self.waker.drain())
        self.assertFalse(self.waker.foreign)

    def test_many_wakes_never_block(self):
        """Waking with the pipe full neither blocks nor raises."""
        for _ in range(100000):
            self.waker.wake()
        self.assertTrue(self.waker.drain())
        self.assertEqual([], self.waker.wait(0))

    def test_drain_reads_once_for_a_few_wakes(self):
        """A few wake-ups are drained with one read (one system call)."""
        self.waker.wake()
        self.waker.wake()
        with mock.patch.object(wake.os, 'read', wraps=os.read) as read:
            self.assertTrue(self.waker.drain())
        self.assertEqual(1, read.call_count)
        self.assertEqual([], self.waker.wait(0))

    def test_drain_pending_reads_only_after_a_wake(self):
        """drain_pending() skips the read when nothing woke it since."""
        self.waker.wake()
        self.assertTrue(self.waker.drain_pending())
        with mock.patch.object(wake.os, 'read', wraps=os.read) as read:
            self.assertFalse(self.waker.drain_pending())
        self.assertEqual(0, read.call_count)
        self.waker.wake()
        self.assertTrue(self.waker.drain_pending())
        self.assertEqual([], self.waker.wait(0))

    def test_drain_pending_reads_after_a_foreign_wake(self):
        """Wake-ups of forked children are always read."""
        self.waker.foreign = True
        os.write(self.waker._write, b'f')
        self.assertTrue(self.waker.drain_pending())
        self.assertEqual([], self.waker.wait(0))

    def test_channel_is_stable_and_an_identifier(self):
        """The NOTIFY channel depends only on the stream name."""
        self.assertEqual(wake.channel('nova'), wake.channel('nova'))
        self.assertNotEqual(wake.channel('nova'), wake.channel('glance'))
        self.assertRegex(wake.channel('a b;"c'), '^oslo_publish_[0-9a-f]{8}$')


class TestIdleDelay(base.TestCase):

    def _relay(self, interval=1.0):
        conf = cfg.ConfigOpts()
        options.register_opts(conf)
        conf([], default_config_files=[])
        conf.set_override('relay_poll_interval', interval, 'oslo_publish')
        conf.set_override('heartbeat_interval', 60.0, 'oslo_publish')
        engine = sa.create_engine('sqlite://')
        self.addCleanup(engine.dispose)
        r = relay.Relay(conf, engine, 's', {}, publisher=None)
        self.addCleanup(r.stop)
        return r

    def test_unwoken_relay_polls_fast_after_work_and_backs_off(self):
        """Never woken: short polls after work, doubling while idle."""
        r = self._relay(1.0)
        self.assertEqual(wake.FAST_POLL, r._idle_delay(5, ()))
        delays = [r._idle_delay(0, ()) for _ in range(12)]
        self.assertEqual(sorted(delays), delays)
        self.assertEqual(1.0, delays[-1])
        self.assertEqual(wake.FAST_POLL, r._idle_delay(1, ()))

    def test_woken_relay_waits_the_poll_interval(self):
        """A relay that commits wake waits relay_poll_interval when idle."""
        r = self._relay(1.0)
        r._woken_ever = True
        self.assertEqual(1.0, r._idle_delay(5, ()))


class TestPacer(base.TestCase):

    @staticmethod
    def _burn(seconds):
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass

    def test_idle_or_unpaced_cycles_add_no_wait(self):
        """A cycle that published nothing, or share 1.0, adds no pause."""
        pacer = pacing.Pacer(0.25)
        pacer.begin()
        self._burn(0.005)
        pacer.end(False)
        self.assertEqual(0.0, pacer.delay())
        unpaced = pacing.Pacer(1.0)
        unpaced.begin()
        self._burn(0.005)
        unpaced.end(True)
        self.assertEqual(0.0, unpaced.delay())

    def test_busy_cycle_waits_its_cost_over_the_share(self):
        """After a busy cycle the next begins cost / share after it began."""
        pacer = pacing.Pacer(0.25, max_pause=1.0)
        before = time.monotonic()
        pacer.begin()
        self._burn(0.01)
        pacer.end(True)
        spacing = pacer.next_start - before
        self.assertGreaterEqual(spacing, 0.04)
        self.assertLessEqual(spacing, 4 * (time.monotonic() - before))

    def test_pause_is_bounded_by_max_pause(self):
        """The spacing never exceeds the cycle's cost plus max_pause."""
        pacer = pacing.Pacer(0.01, max_pause=0.005)
        before = time.monotonic()
        pacer.begin()
        self._burn(0.01)
        pacer.end(True)
        elapsed = time.monotonic() - before
        spacing = pacer.next_start - before
        self.assertLessEqual(spacing, elapsed + 0.005 + 1e-6)
        self.assertGreaterEqual(spacing, 0.01)

    def _paced(self):
        pacer = pacing.Pacer(0.01, max_pause=5.0)
        pacer.begin()
        self._burn(0.01)
        pacer.end(True)
        self.assertGreater(pacer.delay(), 0.5)
        return pacer

    def test_idle_writers_mean_no_pause_even_when_busy(self):
        """Known writers, none in flight: the cycle starts at once."""
        pacer = self._paced()
        before = time.monotonic()
        self.assertFalse(pacer.pause(True, pacing.Activity()))
        self.assertLess(time.monotonic() - before, 0.5)

    def test_unknown_writers_pace_only_when_busy(self):
        """Without an Activity, the busy flag decides (standalone relay)."""
        pacer = self._paced()
        before = time.monotonic()
        self.assertFalse(pacer.pause(False, None))
        self.assertLess(time.monotonic() - before, 0.5)
        stopping = threading.Event()
        stopping.set()
        self.assertTrue(pacer.pause(True, None, stopping))

    def test_running_writers_pause_until_they_end(self):
        """A transaction in flight pauses the cycle until it ends."""
        pacer = self._paced()
        activity = _Saturated()
        tx = _Tx()
        activity.begin(tx)
        self.assertTrue(activity.active)
        paused = threading.Event()
        done = threading.Event()

        def cycle():
            paused.set()
            pacer.pause(False, activity)
            done.set()

        thread = threading.Thread(target=cycle)
        thread.start()
        self.addCleanup(thread.join, 10)
        paused.wait(10)
        self.assertFalse(done.wait(0.05))
        activity.end(tx)
        self.assertTrue(done.wait(5))
        self.assertFalse(activity.active)

    def test_running_writers_pause_at_most_the_spacing(self):
        """A writer that never ends delays a cycle up to the spacing."""
        pacer = pacing.Pacer(0.5, max_pause=1.0)
        pacer.begin()
        self._burn(0.01)
        pacer.end(True)
        activity = _Saturated()
        tx = _Tx()
        activity.begin(tx)
        before = time.monotonic()
        self.assertFalse(pacer.pause(False, activity))
        self.assertGreaterEqual(time.monotonic(), pacer.next_start)
        self.assertLess(time.monotonic() - before, 1.0)
        self.assertTrue(activity.active)

    def test_abandoned_transaction_stops_counting(self):
        """A transaction collected without end() is not in flight."""
        activity = pacing.Activity()
        tx = _Tx()
        activity.begin(tx)
        self.assertTrue(activity.active)
        del tx
        self.assertFalse(activity.active)
        self.assertTrue(activity.wait_idle(0))


class _FakeClock(base.TestCase):
    """pacing's clocks are ``self.now`` (monotonic), ``self.cpu`` (thread)."""

    def setUp(self):
        super().setUp()
        self.now = 100.0
        self.cpu = 1.0
        clock = types.SimpleNamespace(monotonic=lambda: self.now,
                                      thread_time=lambda: self.cpu)
        self.useFixture(fixtures.MonkeyPatch(
            'oslo_publish.relay.pacing.time', clock))


class TestUtilization(_FakeClock):
    """Writers that leave gaps are not waited for; saturating ones are."""

    def test_share_of_time_with_a_transaction_in_flight(self):
        """utilization() decays with time constant WINDOW."""
        activity = pacing.Activity()
        self.assertEqual(0.0, activity.utilization())
        tx = _Tx()
        activity.begin(tx)
        self.now += pacing.WINDOW
        activity.end(tx)
        self.assertAlmostEqual(1 - math.exp(-1), activity.utilization())
        self.now += 10 * pacing.WINDOW
        later = _Tx()
        activity.begin(later)
        self.assertLess(activity.utilization(), 0.001)
        self.assertFalse(activity.saturated())
        self.now += pacing.WINDOW  # in flight all along since
        self.assertTrue(activity.saturated())
        activity.end(later)
        self.assertFalse(activity.saturated())  # none in flight now

    def test_writers_with_gaps_do_not_delay_a_cycle(self):
        """A transaction in flight after a mostly idle time: no pause."""
        activity = _NeverWaited()
        self.now += 1.0
        tx = _Tx()
        activity.begin(tx)
        pacer = pacing.Pacer(0.1, max_pause=1.0)
        pacer.begin()
        self.now += 0.01
        self.cpu += 0.01
        pacer.end(True)
        self.assertGreater(pacer.delay(), 0.05)
        self.assertFalse(pacer.pause(False, activity))

    def test_waiting_is_not_cost(self):
        """A cycle's waits (database, broker) add no pause; its CPU does.

        The cost is the thread's CPU time: a cycle that took 50 ms but
        1 ms of CPU at share 0.1 spaces the next 10 ms after its start,
        which has passed.
        """
        pacer = pacing.Pacer(0.1, max_pause=1.0)
        pacer.begin()
        began = self.now
        self.now += 0.05
        self.cpu += 0.001
        pacer.end(True)
        self.assertAlmostEqual(began + 0.01, pacer.next_start)
        self.assertEqual(0.0, pacer.delay())
        pacer.begin()
        self.now += 0.001
        self.cpu += 0.001
        pacer.end(True)
        self.assertAlmostEqual(0.009, pacer.delay())


class TestBackToBack(_FakeClock):
    """Writers without room between transactions: coalesce, no per-tx wake."""

    def _run(self, activity, count, duration, gap):
        """``count`` transactions of ``duration`` s, ``gap`` s apart."""
        for _ in range(count):
            tx = _Tx()
            activity.begin(tx)
            self.now += duration
            activity.end(tx)
            self.now += gap

    def test_gap_is_an_average_of_clipped_gaps(self):
        """gap(): weighted average; a long pause counts as GAP_CLIP."""
        activity = pacing.Activity()
        self.assertEqual(float('inf'), activity.gap())
        self._run(activity, 2, 0.001, 0.0002)
        self.assertAlmostEqual(0.0002, activity.gap())
        self.now += 10.0
        self._run(activity, 1, 0.001, 0.0)
        self.assertAlmostEqual(
            0.0002 + pacing.GAP_WEIGHT * (pacing.GAP_CLIP - 0.0002),
            activity.gap())
        self.assertLess(activity.gap(), pacing.BACK_TO_BACK_GAP)

    def test_writers_without_gaps_are_back_to_back(self):
        """Saturating, gaps under BACK_TO_BACK_GAP: back to back.

        Also between two transactions (none in flight at this instant),
        as long as the current gap is short.
        """
        activity = pacing.Activity()
        self._run(activity, 50, 0.002, 0.0001)
        self.assertFalse(activity.active)
        self.assertTrue(activity.back_to_back())
        tx = _Tx()
        activity.begin(tx)
        self.assertTrue(activity.back_to_back())
        activity.end(tx)

    def test_writers_that_stopped_are_not_waited_for(self):
        """A current gap of BACK_TO_BACK_GAP or more: not back to back."""
        activity = pacing.Activity()
        self._run(activity, 50, 0.002, 0.0001)
        self.now += pacing.BACK_TO_BACK_GAP
        self.assertFalse(activity.back_to_back())

    def test_writers_with_gaps_are_not_back_to_back(self):
        """Saturating but leaving 3 ms between transactions: paced as before.

        (200 transactions a second of 2 ms each.)
        """
        activity = pacing.Activity()
        self._run(activity, 50, 0.002, 0.003)
        self.assertFalse(activity.back_to_back())
        activity = pacing.Activity()
        self._run(activity, 50, 0.010, 0.0009)
        self.assertTrue(activity.back_to_back())

    def test_idle_writers_are_not_back_to_back(self):
        """Short gaps but mostly idle (a burst long ago): not back to back."""
        activity = pacing.Activity()
        self._run(activity, 3, 0.0001, 0.0001)
        self.now += 0.0001
        self.assertLess(activity.utilization(), pacing.SATURATED)
        self.assertFalse(activity.back_to_back())

    def test_back_to_back_pause_lasts_the_spacing(self):
        """One wait for the whole spacing, not one per transaction end."""
        pacer = pacing.Pacer(0.1, max_pause=1.0)
        pacer.begin()
        self.now += 0.001
        self.cpu += 0.002
        pacer.end(True)
        self.assertAlmostEqual(0.019, pacer.delay())
        waits = []

        class Stopping(object):
            def wait(self, timeout):
                waits.append(timeout)
                return False

        activity = _NeverWaitedBackToBack()
        self.assertFalse(pacer.pause(False, activity, Stopping()))
        self.assertEqual(1, len(waits))
        self.assertAlmostEqual(0.019, waits[0])

    def test_back_to_back_pause_ends_when_stopping(self):
        pacer = pacing.Pacer(0.1, max_pause=1.0)
        pacer.begin()
        self.cpu += 0.002
        pacer.end(True)
        stopping = threading.Event()
        stopping.set()
        self.assertTrue(pacer.pause(False, _NeverWaitedBackToBack(),
                                    stopping))


class _Saturated(pacing.Activity):
    """Writers that ran without gaps so far."""

    def saturated(self):
        return self.active


class _NeverWaited(pacing.Activity):

    def wait_idle(self, timeout):
        raise AssertionError('waited for the writers')


class _NeverWaitedBackToBack(pacing.Activity):

    def back_to_back(self):
        return True

    def wait_idle(self, timeout):
        raise AssertionError('waited for the end of a transaction')


class _Tx(object):
    """Stands for a SessionTransaction (weak-referenceable)."""
