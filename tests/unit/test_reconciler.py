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

"""Tests of the reconciler: order, dedup, gaps, snapshots, resyncs.

A real cache, dispatcher and state store (SQLite), the real verifier and
snapshot client, and :class:`tests.unit.fakehost.FakeHost` as publisher.
Time is a fake clock; the worker thread is not started, the tests call
``poll()`` instead.
"""

import gc
import os
import random
import threading

import fixtures
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from consumer import cache as cache_mod
from consumer import exceptions
from consumer import gc_pause
from consumer import handlers
from consumer import metrics as metrics_mod
from consumer import reconciler
from consumer import source as source_mod
from consumer import state as state_mod
from consumer import verify
from oslo_publish import wire
from tests import base
from tests.unit import fakehost
from tests.unit import test_handlers


class Clock(object):

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


class ReconcilerTestCase(base.TestCase):

    STREAM = 'nova'
    #: Backend of the state store (tests/functional runs the others).
    STATE_BACKEND = 'sqlite'

    def setUp(self):
        super().setUp()
        for name, value in (('gap_timeout', 0.5), ('inactivity_timeout', 30),
                            ('resync_backoff_min', 0.0),
                            ('resync_backoff_max', 0.0),
                            ('resyncs_per_minute', 100),
                            ('resync_interval', 0.0),
                            ('reorder_window', 10),
                            ('streams', [self.STREAM])):
            self.conf.set_override(name, value, 'consumer')
        self.metrics = metrics_mod.ConsumerMetrics()
        self.host = fakehost.FakeHost(self.STREAM)
        self.host.add_table('instances')
        for i in range(1, 6):
            self.host.change('instances', wire.INSERT,
                             {'id': i, 'name': 'vm%d' % i})
        if self.STATE_BACKEND == 'sqlite':
            self.state_url = 'sqlite:///%s' % os.path.join(self.tmpdir,
                                                           'state.sqlite')
        else:
            self.state_url = self.useFixture(base.DatabaseFixture(
                self.STATE_BACKEND)).url
        self.state = state_mod.StateStore.from_url(self.state_url)
        self.state.upgrade()
        self.addCleanup(self.state.close)
        self.clock = Clock()

    def make(self, cache=None, state=None, run_thread=False):
        """A reconciler on the fake host.

        ``run_thread``: with its worker and persister threads (else it
        is driven by ``poll()``).
        """
        self.cache = cache or cache_mod.Cache()
        self.dispatcher = handlers.Dispatcher(self.metrics, 100)
        self.addCleanup(self.dispatcher.stop)
        self.verifier = verify.Verifier(self.conf, [self.STREAM],
                                        self.metrics)
        source = source_mod.RPCSnapshotSource(self.conf, self.STREAM,
                                              caller=self.host.caller)
        rec = reconciler.Reconciler(
            self.conf, self.STREAM, source, self.cache, state or self.state,
            self.dispatcher, self.metrics, clock=self.clock,
            rng=random.Random(1))
        rec.start(run_thread=run_thread)
        self.addCleanup(rec.stop)
        return rec

    def synced(self):
        rec = self.make()
        rec.poll()
        self.assertTrue(rec.synced)
        return rec

    def feed(self, rec, payload):
        event = wire.EVENT_HEARTBEAT if payload['kind'] == 'heartbeat' \
            else wire.EVENT_DELTA
        return rec.handle(self.verifier.verify(
            wire.publisher_id(self.STREAM), event, payload))

    def assertConverged(self, rec):
        rows = self.host.tables['instances']['rows']
        view = self.cache.view()
        self.assertEqual(rows, {k: dict(v) for k, v in
                                view.rows('instances').items()})
        stored = dict(self.state.load_rows(self.STREAM, 'instances'))
        self.assertEqual(rows, stored)
        self.assertEqual(self.host.seq, rec.applied)

    def resyncs(self, cause):
        return self.metrics.value('consumer_resyncs_total',
                                  stream=self.STREAM, cause=cause)


class TestOrdering(ReconcilerTestCase):

    def test_initial_snapshot_then_deltas_converge(self):
        """The initial snapshot and later deltas give the host's rows."""
        rec = self.make()
        self.assertFalse(rec.synced)
        self.assertEqual(reconciler.INITIAL, rec.status)
        rec.poll()
        self.assertEqual(reconciler.LIVE, rec.status)
        self.assertEqual(1, self.resyncs('initial'))
        self.assertConverged(rec)
        self.feed(rec, self.host.write('instances', wire.INSERT,
                                       {'id': 9, 'name': 'new'}))
        self.feed(rec, self.host.write('instances', wire.UPDATE,
                                       {'id': 1, 'name': 'renamed'}))
        self.feed(rec, self.host.write('instances', wire.DELETE, {'id': 2}))
        self.assertConverged(rec)
        scope = self.state.load(self.STREAM, 'oslo_publish', 'snapshot')
        self.assertEqual(self.host.seq, scope['instances'].seq)

    def test_duplicate_is_dropped_and_counted(self):
        """A duplicate changes nothing; it is counted and rejected."""
        rec = self.synced()
        message = self.host.write('instances', wire.UPDATE,
                                  {'id': 1, 'name': 'once'})
        self.feed(rec, message)
        self.host.change('instances', wire.UPDATE, {'id': 1, 'name': 'x'})
        generation = self.cache.view().generation
        error = self.assertRaises(exceptions.Rejected, self.feed, rec,
                                  message)
        self.assertEqual('replayed', error.reason)
        self.assertEqual(generation, self.cache.view().generation)
        self.assertEqual(1, self.metrics.value(
            'consumer_duplicates_dropped_total', stream=self.STREAM))
        self.assertEqual(1, self.metrics.value(
            'consumer_rejected_total', stream=self.STREAM,
            reason='replayed'))

    def test_reordered_messages_apply_in_sequence(self):
        """Out-of-order arrival within the window is applied in order."""
        rec = self.synced()
        m1 = self.host.write('instances', wire.UPDATE, {'id': 1, 'name': 'a'})
        m2 = self.host.write('instances', wire.UPDATE, {'id': 1, 'name': 'b'})
        m3 = self.host.write('instances', wire.DELETE, {'id': 1})
        self.assertEqual('buffered', self.feed(rec, m3))
        self.assertEqual('buffered', self.feed(rec, m2))
        self.assertIsNotNone(self.cache.view().get('instances', (1,)))
        self.assertEqual('applied', self.feed(rec, m1))
        self.assertConverged(rec)
        self.assertIsNone(self.cache.view().get('instances', (1,)))

    def test_early_message_waits_for_its_turn(self):
        """With wait, a delta ahead of its turn returns once applied."""
        rec = self.synced()
        m1 = self.host.write('instances', wire.UPDATE, {'id': 1, 'name': 'a'})
        m2 = self.host.write('instances', wire.UPDATE, {'id': 2, 'name': 'b'})
        msg2 = self.verifier.verify(wire.publisher_id(self.STREAM),
                                    wire.EVENT_DELTA, m2)
        result = []
        worker = threading.Thread(
            target=lambda: result.append(rec.handle(msg2, wait=30)))
        worker.start()
        base.wait_for(lambda: len(rec._turns), 10)
        self.assertEqual([], result)
        self.feed(rec, m1)
        worker.join(10)
        self.assertEqual(['applied'], result)
        self.assertEqual({}, rec._buffer)
        self.assertConverged(rec)

    def test_partial_overlap_applies_only_new_transactions(self):
        """A batch overlapping the applied position applies the rest."""
        rec = self.synced()
        tx1 = self.host.commit(self.host.change(
            'instances', wire.INSERT, {'id': 10, 'name': 'ten'}))
        tx2 = self.host.commit(self.host.change(
            'instances', wire.INSERT, {'id': 11, 'name': 'eleven'}))
        self.feed(rec, self.host.message([tx1]))
        self.feed(rec, self.host.message([tx1, tx2]))
        self.assertConverged(rec)

    def test_deltas_during_snapshot_are_buffered(self):
        """Deltas arriving while the snapshot is read apply after it."""
        rec = self.make()
        early = self.host.write('instances', wire.UPDATE,
                                {'id': 1, 'name': 'early'})
        self.assertEqual('buffered', self.feed(rec, early))
        original = self.host.snapshot_page
        late = []

        def page(ctxt, snapshot_id, table, after):
            result = original(ctxt, snapshot_id, table, after)
            if not late:
                late.append(self.host.write('instances', wire.INSERT,
                                            {'id': 20, 'name': 'late'}))
                self.assertEqual('buffered', self.feed(rec, late[0]))
                self.assertEqual(reconciler.SNAPSHOTTING, rec.status)
            return result

        self.host.snapshot_page = page
        rec.poll()
        self.assertConverged(rec)
        self.assertEqual('late', self.cache.view().get(
            'instances', (20,))['name'])


def _beyond_window(order, window):
    """True if some message arrives more than ``window`` ahead."""
    applied, seen = 0, set()
    for message in order:
        if message['first_seq'] - applied > window:
            return True
        seen.add(message['first_seq'])
        while applied + 1 in seen:
            applied += 1
    return False


class TestArrivalOrderProperty(ReconcilerTestCase):

    @settings(max_examples=int(os.environ.get('CONSUMER_FUZZ_EXAMPLES', 40)),
              deadline=None)
    @given(st.data())
    def test_any_arrival_order_converges_exactly(self, data):
        """Any shuffled, duplicated delivery converges to the host exactly."""
        stream = 's%d' % self.getUniqueInteger()
        host = fakehost.FakeHost(stream)
        host.add_table('instances')
        self.host = host
        self.STREAM = stream
        self.conf.set_override('streams', [stream], 'consumer')
        rec = self.synced()
        messages = []
        for _ in range(data.draw(st.integers(1, 14), label='count')):
            key = data.draw(st.integers(1, 4), label='key')
            rows = host.tables['instances']['rows']
            if (key,) not in rows:
                op = wire.INSERT
            else:
                op = data.draw(st.sampled_from([wire.UPDATE, wire.DELETE]))
            messages.append(host.write('instances', op, {
                'id': key, 'name': 'v%d' % host.seq}))
        order = data.draw(st.permutations(messages), label='order')
        extra = data.draw(st.lists(st.sampled_from(messages), max_size=5),
                          label='duplicates')
        for payload in list(order) + extra:
            try:
                self.feed(rec, payload)
            except exceptions.Rejected:
                pass
        self.clock.advance(1.0)
        rec.poll()
        self.assertConverged(rec)
        if not _beyond_window(order, 10):
            self.assertEqual(0, self.resyncs('gap'))


class TestGaps(ReconcilerTestCase):

    def test_missing_seq_past_gap_timeout_resyncs(self):
        """A missing seq that does not arrive within gap_timeout resyncs."""
        rec = self.synced()
        self.host.write('instances', wire.UPDATE, {'id': 1, 'name': 'lost'})
        self.feed(rec, self.host.write('instances', wire.UPDATE,
                                       {'id': 2, 'name': 'kept'}))
        rec.poll()
        self.assertEqual(0, self.resyncs('gap'))
        self.clock.advance(0.6)
        rec.poll()
        self.assertEqual(1, self.resyncs('gap'))
        self.assertConverged(rec)
        self.assertTrue(rec.synced)

    def test_gap_clock_restarts_after_progress(self):
        """Each new gap gets its own gap_timeout."""
        rec = self.synced()
        m1 = self.host.write('instances', wire.UPDATE, {'id': 1, 'name': 'a'})
        m2 = self.host.write('instances', wire.UPDATE, {'id': 2, 'name': 'b'})
        self.host.write('instances', wire.UPDATE, {'id': 3, 'name': 'lost'})
        m4 = self.host.write('instances', wire.UPDATE, {'id': 4, 'name': 'd'})
        self.feed(rec, m2)
        self.feed(rec, m4)
        self.clock.advance(0.4)
        self.feed(rec, m1)
        self.clock.advance(0.4)
        rec.poll()
        self.assertEqual(0, self.resyncs('gap'))
        self.clock.advance(0.2)
        rec.poll()
        self.assertEqual(1, self.resyncs('gap'))
        self.assertConverged(rec)

    def test_message_beyond_window_resyncs_at_once(self):
        """A message beyond the reorder window is a gap without waiting."""
        rec = self.synced()
        for _ in range(11):
            self.host.write('instances', wire.UPDATE, {'id': 3, 'name': 'x'})
        self.feed(rec, self.host.write('instances', wire.UPDATE,
                                       {'id': 3, 'name': 'far'}))
        self.assertFalse(rec.synced)
        self.assertEqual(reconciler.RESYNCING, rec.status)
        rec.poll()
        self.assertEqual(1, self.resyncs('gap'))
        self.assertConverged(rec)

    def test_delta_beyond_what_the_host_numbered_is_dropped(self):
        """A delta numbered past the host's watermark stops looping resyncs.

        It arrived before the snapshot was requested, so no host had given
        out its number: after the resync it is dropped (out_of_window)
        instead of making the stream resync again every gap_timeout.
        """
        rec = self.synced()
        forged = wire.delta_message(
            self.STREAM,
            [{'seq': self.host.seq + 5, 'txid': 'forged',
              'committed_at': wire.utcnow_text(),
              'changes': [{'table': 'instances', 'op': wire.UPDATE,
                           'key': [1], 'after': {'id': 1, 'name': 'evil'},
                           'before': {'name': 'vm1'}, 'changed': ['name']}]}],
            self.host.header('instances'))
        self.feed(rec, forged)
        self.clock.advance(0.6)
        rec.poll()
        self.assertEqual(1, self.resyncs('gap'))
        self.assertEqual(1, self.metrics.value(
            'consumer_rejected_total', stream=self.STREAM,
            reason='out_of_window'))
        self.clock.advance(5.0)
        rec.poll()
        self.assertEqual(1, self.resyncs('gap'))
        self.assertTrue(rec.synced)
        self.assertConverged(rec)
        self.feed(rec, self.host.write('instances', wire.UPDATE,
                                       {'id': 1, 'name': 'real'}))
        self.assertConverged(rec)

    def test_heartbeat_ahead_resyncs(self):
        """A heartbeat ahead of the applied position resyncs (tail gap)."""
        rec = self.synced()
        self.host.write('instances', wire.DELETE, {'id': 4})
        self.feed(rec, self.host.heartbeat())
        rec.poll()
        self.assertEqual(0, self.resyncs('heartbeat'))
        self.clock.advance(0.6)
        rec.poll()
        self.assertEqual(1, self.resyncs('heartbeat'))
        self.assertConverged(rec)

    def test_heartbeat_at_applied_is_quiet(self):
        """A heartbeat equal to the applied position changes nothing."""
        rec = self.synced()
        self.feed(rec, self.host.heartbeat())
        self.clock.advance(5)
        rec.poll()
        self.assertEqual(1, self.host.snapshots_opened)

    def test_silent_stream_resyncs_after_inactivity_timeout(self):
        """No message for inactivity_timeout resyncs the stream."""
        rec = self.synced()
        self.clock.advance(29)
        rec.poll()
        self.assertEqual(0, self.resyncs('inactivity'))
        self.clock.advance(2)
        rec.poll()
        self.assertEqual(1, self.resyncs('inactivity'))
        self.assertTrue(rec.synced)

    def test_schema_change_resyncs(self):
        """A delta with a new schema version resyncs the stream."""
        rec = self.synced()
        self.host.tables['instances']['version'] = 'feedfacefeedface'
        self.feed(rec, self.host.write('instances', wire.INSERT,
                                       {'id': 30, 'name': 'v2'}))
        rec.poll()
        self.assertEqual(1, self.resyncs('schema'))
        self.assertConverged(rec)

    def test_unknown_table_is_rejected(self):
        """A delta of a table the snapshot did not have is rejected."""
        rec = self.synced()
        self.host.add_table('hosts')
        message = self.host.write('hosts', wire.INSERT,
                                  {'id': 1, 'name': 'h'})
        error = self.assertRaises(exceptions.Rejected, self.feed, rec,
                                  message)
        self.assertEqual('unknown_table', error.reason)
        self.assertFalse(self.cache.view().has_table('hosts'))
        rec.poll()
        self.assertEqual(1, self.resyncs('schema'))
        self.assertTrue(self.cache.view().has_table('hosts'))


class TestResyncPolicy(ReconcilerTestCase):

    def test_failed_snapshots_back_off_exponentially(self):
        """Each failed resync waits longer, within the jittered bounds."""
        self.conf.set_override('resync_backoff_min', 1.0, 'consumer')
        self.conf.set_override('resync_backoff_max', 4.0, 'consumer')
        rec = self.make()
        self.host.fail_snapshots = 4
        delays = []
        for _ in range(4):
            self.clock.advance(rec._resync_at - self.clock.now)
            rec.poll()
            delays.append(rec._resync_at - self.clock.now)
        self.assertFalse(rec.synced)
        self.assertTrue(0.5 <= delays[0] <= 1.0, delays)
        self.assertTrue(1.0 <= delays[1] <= 2.0, delays)
        self.assertTrue(2.0 <= delays[2] <= 4.0, delays)
        self.assertTrue(2.0 <= delays[3] <= 4.0, delays)
        self.assertIn('snapshot refused', rec.last_error)
        self.clock.advance(delays[3])
        rec.poll()
        self.assertTrue(rec.synced)
        self.assertConverged(rec)

    def test_resyncs_are_rate_limited(self):
        """No more than resyncs_per_minute resyncs start in a minute."""
        self.conf.set_override('resyncs_per_minute', 2, 'consumer')
        rec = self.synced()
        rec.resync()
        rec.poll()
        self.assertEqual(1, self.resyncs('manual'))
        rec.resync()
        self.assertGreaterEqual(rec._resync_at, self.clock.now + 59)
        self.clock.advance(30)
        rec.poll()
        self.assertEqual(1, self.resyncs('manual'))
        self.clock.advance(31)
        rec.poll()
        self.assertEqual(2, self.resyncs('manual'))

    def test_periodic_resync_counts_and_fixes_drift(self):
        """The periodic backstop repairs changes no delta reported."""
        self.conf.set_override('resync_interval', 100.0, 'consumer')
        self.conf.set_override('inactivity_timeout', 1000.0, 'consumer')
        rec = self.synced()
        # Raw writes the host middleware could not see.
        self.host.tables['instances']['rows'][(1,)]['name'] = 'raw'
        del self.host.tables['instances']['rows'][(2,)]
        # A regular delta arrives while the snapshot is read: not drift.
        regular = self.host.write('instances', wire.INSERT,
                                  {'id': 40, 'name': 'regular'})
        original = self.host.snapshot_page

        def page(ctxt, snapshot_id, table, after):
            if after is None:
                self.assertEqual('buffered', self.feed(rec, regular))
                self.assertTrue(rec.synced)
            return original(ctxt, snapshot_id, table, after)

        self.host.snapshot_page = page
        self.clock.advance(111)
        rec.poll()
        self.assertEqual(1, self.resyncs('periodic'))
        self.assertEqual(2, self.metrics.value(
            'consumer_drift_rows_total', stream=self.STREAM,
            table='instances'))
        self.assertConverged(rec)
        self.assertTrue(rec.synced)

    def test_identical_rows_are_no_drift(self):
        """Equal rows are no drift, also when they hold NaN."""
        self.conf.set_override('resync_interval', 100.0, 'consumer')
        self.conf.set_override('inactivity_timeout', 1000.0, 'consumer')
        self.host.add_table('gauges', columns=(('id', 'INTEGER'),
                                               ('v', 'FLOAT')))
        self.host.change('gauges', wire.INSERT, {'id': 1, 'v': float('nan')})
        rec = self.synced()
        self.clock.advance(111)
        rec.poll()
        self.assertEqual(1, self.resyncs('periodic'))
        self.assertEqual(0, self.metrics.value(
            'consumer_drift_rows_total', stream=self.STREAM,
            table='gauges'))

    def test_wait_synced_reports_readiness(self):
        """wait_synced is False before the snapshot and after a gap."""
        rec = self.make()
        self.assertFalse(rec.wait_synced(0))
        rec.poll()
        self.assertTrue(rec.wait_synced(0))
        rec.resync('gap')
        self.assertFalse(rec.wait_synced(0))
        rec.poll()
        self.assertTrue(rec.wait_synced(0))


class TestResume(ReconcilerTestCase):

    def test_restart_resumes_without_snapshot(self):
        """A restart loads positions and rows; no snapshot is taken."""
        rec = self.synced()
        self.feed(rec, self.host.write('instances', wire.INSERT,
                                       {'id': 50, 'name': 'before'}))
        rec.stop()
        opened = self.host.snapshots_opened
        again = self.make()
        self.assertTrue(again.synced)
        self.assertEqual(opened, self.host.snapshots_opened)
        self.feed(again, self.host.write('instances', wire.INSERT,
                                         {'id': 51, 'name': 'after'}))
        self.assertConverged(again)

    def test_crash_after_cache_before_persist_loses_and_doubles_nothing(self):
        """Deltas visible in the cache but not persisted survive a crash.

        The state store refuses the writes: the cache shows the deltas,
        none of their messages may be acknowledged. The process then dies
        (what was only in memory is gone). The restarted consumer resumes
        from the persisted position without a snapshot; the broker
        delivers the unacknowledged messages again (one twice): each is
        applied once and the cache and the store converge.
        """
        rec = self.synced()
        durable = rec.durable
        messages = [self.host.write('instances', wire.INSERT,
                                    {'id': 70 + i, 'name': 'c%d' % i})
                    for i in range(3)]
        engine = self.state.engine
        with engine.begin() as conn:
            conn.exec_driver_sql('ALTER TABLE consumer_positions RENAME TO '
                                 'moved_away')
        verified = [self.verifier.verify(wire.publisher_id(self.STREAM),
                                         wire.EVENT_DELTA, m)
                    for m in messages]
        for message in verified:
            self.assertRaises(reconciler.StateUnavailable, rec.handle,
                              message)
        view = self.cache.view()
        self.assertEqual({'c0', 'c1', 'c2'},
                         {view.rows('instances')[(70 + i,)]['name']
                          for i in range(3)})
        self.assertEqual(durable, rec.durable)
        self.assertEqual([False] * 3,
                         [rec.settle(m, 0.01) for m in verified])
        # The crash: the unwritten runs existed only in the process.
        rec._persister._queue.clear()
        with engine.begin() as conn:
            conn.exec_driver_sql('ALTER TABLE moved_away RENAME TO '
                                 'consumer_positions')
        opened = self.host.snapshots_opened
        again = self.make()
        self.assertTrue(again.synced)
        self.assertEqual(opened, self.host.snapshots_opened)
        self.assertEqual(durable, again.applied)
        self.assertNotIn((70,), self.cache.view().rows('instances'))
        for payload in messages:  # redelivered
            self.feed(again, payload)
        # ... and the first one once more: recognised, applied once.
        replay = self.assertRaises(exceptions.Rejected, self.feed, again,
                                   messages[0])
        self.assertEqual('replayed', replay.reason)
        self.assertEqual(3, again.counters['applied'])
        self.assertConverged(again)
        self.assertTrue(again.settle(self.verifier.verify(
            wire.publisher_id(self.STREAM), wire.EVENT_DELTA,
            messages[-1]), 0.01))

    def _resume_freezes(self, enabled):
        self.conf.set_override('gc_freeze_after_resume', enabled,
                               'consumer')
        calls = []
        self.useFixture(fixtures.MonkeyPatch(
            'consumer.gc_pause.freeze_survivors',
            lambda: calls.append(True) or 7))
        self.synced().stop()
        self.assertEqual([], calls)  # a snapshot freezes nothing here
        again = self.make()
        self.assertTrue(again.synced)
        return calls

    def test_resume_freezes_the_loaded_rows(self):
        """gc_freeze_after_resume: the resume freezes what it loaded."""
        self.assertEqual([True], self._resume_freezes(True))

    def test_resume_without_freeze(self):
        """Turned off, the resume leaves the collector alone."""
        self.assertEqual([], self._resume_freezes(False))

    def test_resume_holds_the_loaded_rows_until_caught_up(self):
        """The loaded rows stay out of collections until caught up.

        Held inside the load's pause (no young collection scans the rows
        first); released by a heartbeat at the position a delta applied
        after the resume reached, and nothing stays frozen.
        """
        calls = []
        real = gc_pause.hold

        def hold():
            calls.append(gc_pause.depth())
            return real()
        self.useFixture(fixtures.MonkeyPatch('consumer.gc_pause.hold',
                                             hold))
        self.addCleanup(gc.unfreeze)
        self.synced().stop()
        self.assertEqual([], calls)  # a snapshot holds nothing here
        again = self.make()
        self.assertTrue(again.synced)
        self.assertEqual(1, len(calls))
        self.assertGreater(calls[0], 0)
        self.assertEqual(1, gc_pause.holds())
        frozen = gc.get_freeze_count()
        self.assertGreater(frozen, 0)
        # A heartbeat queued before the waiting deltas: still held.
        self.feed(again, self.host.heartbeat())
        self.assertEqual(1, gc_pause.holds())
        self.feed(again, self.host.write('instances', wire.INSERT,
                                         {'id': 52, 'name': 'late'}))
        self.feed(again, self.host.heartbeat())
        self.assertEqual(0, gc_pause.holds())
        self.assertEqual(0, gc.get_freeze_count())
        self.assertConverged(again)

    def test_resume_hold_ends_at_stop(self):
        """A stream stopped before catching up releases its hold."""
        self.addCleanup(gc.unfreeze)
        self.synced().stop()
        again = self.make()
        self.assertEqual(1, gc_pause.holds())
        again.stop()
        self.assertEqual(0, gc_pause.holds())

    def _first_fills(self, handler=None):
        fills = []
        real = cache_mod.Cache.replace_table

        def replace_table(cache, table, rows, owned=False, events=True):
            fills.append(events)
            return real(cache, table, rows, owned=owned, events=events)
        self.useFixture(fixtures.MonkeyPatch(
            'consumer.cache.Cache.replace_table', replace_table))
        rec = self.make()
        if handler is not None:
            self.dispatcher.add('recorder', handler)
        rec.poll()
        self.assertTrue(rec.synced)
        self.assertConverged(rec)
        return fills

    def test_sync_promotes_the_rows_inside_its_pause(self):
        """The collector stays paused from the first page to the swap.

        The installed rows then go to the oldest generation unscanned,
        still inside the pause (no young collection scanned them).
        """
        calls = []
        real = gc_pause.promote_young

        def promote_young():
            calls.append((gc_pause.depth(), self.cache.view().count(
                'instances')))
            return real()
        self.useFixture(fixtures.MonkeyPatch(
            'consumer.gc_pause.promote_young', promote_young))
        self.synced()
        self.assertEqual(1, len(calls))
        depth, rows = calls[0]
        self.assertGreater(depth, 0)
        self.assertEqual(len(self.host.tables['instances']['rows']), rows)

    def test_first_sync_without_handlers_builds_no_events(self):
        """No change handler: the snapshot fills the cache, no events."""
        self.assertEqual([False], self._first_fills())

    def test_first_sync_adds_for_handlers(self):
        """A change handler gets an ADD per row of the first snapshot."""
        recorder = test_handlers.Recorder()
        self.assertEqual([True], self._first_fills(recorder))
        self.assertTrue(self.dispatcher.wait_idle(10))
        rows = self.host.tables['instances']['rows']
        self.assertEqual(sorted(('add', 'instances', key, row)
                                for key, row in rows.items()),
                         sorted(recorder.calls))

    def _sync_freezes(self, enabled):
        self.conf.set_override('gc_freeze_after_sync', enabled, 'consumer')
        calls = []
        self.useFixture(fixtures.MonkeyPatch(
            'consumer.gc_pause.freeze_survivors',
            lambda: calls.append(True) or 7))
        rec = self.synced()
        first = list(calls)
        rec.resync('manual')
        rec.poll()
        self.assertTrue(rec.synced)
        self.assertEqual(2, self.host.snapshots_opened)
        rec.stop()
        again = self.make()
        self.assertTrue(again.synced)
        return first, calls

    def test_first_sync_freezes_once(self):
        """gc_freeze_after_sync: the first snapshot and a resume freeze.

        A later resync of the same reconciler does not freeze again.
        """
        first, calls = self._sync_freezes(True)
        self.assertEqual([True], first)
        self.assertEqual([True, True], calls)

    def test_sync_without_freeze(self):
        """Turned off, no sync touches the collector."""
        self.assertEqual(([], []), self._sync_freezes(False))

    def test_state_failure_is_not_durable_until_retried(self):
        """A failed state write leaves the delta unsettled; a retry saves it.

        The cache shows the delta at once, but the message may not be
        acknowledged (settle() is False) until the store holds it.
        """
        rec = self.synced()
        message = self.host.write('instances', wire.INSERT,
                                  {'id': 60, 'name': 'retry'})
        engine = self.state.engine
        durable = rec.durable
        with engine.begin() as conn:
            conn.exec_driver_sql('ALTER TABLE consumer_positions RENAME TO '
                                 'moved_away')
        message = self.verifier.verify(wire.publisher_id(self.STREAM),
                                       wire.EVENT_DELTA, message)
        self.assertRaises(reconciler.StateUnavailable, rec.handle, message)
        self.assertEqual(durable, rec.durable)
        self.assertFalse(rec.settle(message, 0.01))
        self.assertEqual(1, rec.status_info()['unpersisted_runs'])
        with engine.begin() as conn:
            conn.exec_driver_sql('ALTER TABLE moved_away RENAME TO '
                                 'consumer_positions')
        rec.poll()
        self.assertTrue(rec.settle(message, 0.01))
        self.assertEqual(message.last_seq, rec.durable)
        self.assertConverged(rec)


class EpochTestCase(ReconcilerTestCase):

    EPOCH = 'a' * 32

    def stamped(self, payload, epoch=None):
        payload[wire.EPOCH] = epoch or self.EPOCH
        return payload

    def live_in_epoch(self):
        rec = self.synced()
        self.feed(rec, self.stamped(self.host.write(
            'instances', wire.UPDATE, {'id': 1, 'name': 'first'})))
        return rec

    def rewind_host(self, seq, rows):
        """The host database restored from a dump taken at ``seq``."""
        self.host.seq = seq
        self.host.tables['instances']['rows'] = rows


class TestEpoch(EpochTestCase):

    def test_first_epoch_is_adopted_and_stored(self):
        """The first epoch seen is adopted without a resync and persisted."""
        rec = self.live_in_epoch()
        rec.poll()
        self.assertEqual(0, self.resyncs('epoch'))
        self.assertEqual(self.EPOCH, rec.status_info()['epoch'])
        scope = self.state.load(self.STREAM, 'oslo_publish', 'snapshot')
        self.assertEqual(self.EPOCH, scope['instances'].epoch)

    def test_format_1_0_message_counts_in_the_current_epoch(self):
        """A message without an epoch applies as one of the current epoch."""
        rec = self.live_in_epoch()
        self.assertEqual('applied', self.feed(rec, self.host.write(
            'instances', wire.UPDATE, {'id': 2, 'name': 'old format'})))
        self.assertEqual(0, self.resyncs('epoch'))
        self.assertConverged(rec)

    def test_new_epoch_resyncs_although_seqs_look_old(self):
        """A delta of another epoch resyncs (cause epoch) and converges."""
        dump_seq = self.host.seq
        dump = {k: dict(v) for k, v in
                self.host.tables['instances']['rows'].items()}
        rec = self.live_in_epoch()
        for i in range(3):
            self.feed(rec, self.stamped(self.host.write(
                'instances', wire.INSERT, {'id': 20 + i, 'name': 'lost'})))
        self.rewind_host(dump_seq, dump)
        new = 'b' * 32
        message = self.stamped(self.host.write(
            'instances', wire.INSERT, {'id': 30, 'name': 'reborn'}), new)
        self.assertLess(self.host.seq, rec.applied)
        self.assertEqual('buffered', self.feed(rec, message))
        rec.poll()
        self.assertEqual(1, self.resyncs('epoch'))
        self.assertEqual(1, rec.status_info()['resync_epoch'])
        self.assertConverged(rec)
        self.assertIsNone(self.cache.view().get('instances', (20,)))
        self.assertEqual(new, self.state.load(
            self.STREAM, 'oslo_publish', 'snapshot')['instances'].epoch)
        error = self.assertRaises(exceptions.Rejected, self.feed, rec,
                                  self.stamped(self.host.heartbeat()))
        self.assertEqual('stale_epoch', error.reason)
        rec.poll()
        self.assertEqual(1, self.resyncs('epoch'))

    def test_rewound_heartbeat_resyncs(self):
        """A same-epoch heartbeat behind applied for gap_timeout resyncs."""
        dump_seq = self.host.seq
        dump = {k: dict(v) for k, v in
                self.host.tables['instances']['rows'].items()}
        rec = self.live_in_epoch()
        self.feed(rec, self.stamped(self.host.write(
            'instances', wire.DELETE, {'id': 3})))
        self.rewind_host(dump_seq, dump)
        self.feed(rec, self.stamped(self.host.heartbeat()))
        rec.poll()
        self.assertEqual(0, self.resyncs('epoch'))
        self.clock.advance(0.6)
        self.feed(rec, self.stamped(self.host.heartbeat()))
        rec.poll()
        rec.poll()
        self.assertEqual(1, self.resyncs('epoch'))
        self.assertConverged(rec)
        self.assertIsNotNone(self.cache.view().get('instances', (3,)))

    def test_overtaken_heartbeat_does_not_resync(self):
        """A heartbeat overtaken by a later delta is no rewind."""
        rec = self.live_in_epoch()
        late = self.stamped(self.host.heartbeat())
        self.feed(rec, self.stamped(self.host.write(
            'instances', wire.DELETE, {'id': 3})))
        self.feed(rec, late)
        self.feed(rec, self.stamped(self.host.write(
            'instances', wire.DELETE, {'id': 4})))
        self.clock.advance(0.6)
        rec.poll()
        self.assertEqual(0, self.resyncs('epoch'))
        self.assertConverged(rec)

    def test_epoch_survives_a_restart(self):
        """A restart keeps the stored epoch, then notices a change."""
        rec = self.live_in_epoch()
        rec.poll()
        rec.stop()
        again = self.make()
        self.assertEqual(self.EPOCH, again.status_info()['epoch'])
        self.assertEqual('buffered', self.feed(again, self.stamped(
            self.host.write('instances', wire.DELETE, {'id': 5}),
            'c' * 32)))
        again.poll()
        self.assertEqual(1, self.resyncs('epoch'))
        self.assertConverged(again)


class TestInvalidation(ReconcilerTestCase):

    def setUp(self):
        super().setUp()
        self.host.add_table('hosts')
        self.host.change('hosts', wire.INSERT, {'id': 1, 'name': 'h1'})

    def invalidate(self, *others):
        """Change instances unseen, then commit its invalidation."""
        rows = self.host.tables['instances']['rows']
        rows[(1,)] = {'id': 1, 'name': 'changed unseen'}
        rows[(77,)] = {'id': 77, 'name': 'inserted unseen'}
        rows.pop((2,))
        change = wire.encode_change(wire.invalidation('instances',
                                                      'upsert'))
        return self.host.message([self.host.commit(change, *others)])

    def assertTablesConverged(self, rec):
        for table in ('instances', 'hosts'):
            rows = self.host.tables[table]['rows']
            view = self.cache.view()
            self.assertEqual(rows, {k: dict(v) for k, v in
                                    view.rows(table).items()})
            self.assertEqual(rows, dict(self.state.load_rows(self.STREAM,
                                                             table)))

    def test_invalidation_rereads_just_that_table(self):
        """An invalidation re-reads its table; other changes apply as usual."""
        rec = self.synced()
        opened = self.host.snapshots_opened
        message = self.invalidate(self.host.change(
            'hosts', wire.INSERT, {'id': 2, 'name': 'h2'}))
        self.assertEqual('applied', self.feed(rec, message))
        self.assertIsNotNone(self.cache.view().get('hosts', (2,)))
        rec.poll()
        self.assertEqual(opened + 1, self.host.snapshots_opened)
        self.assertTablesConverged(rec)
        self.assertEqual(1, self.resyncs('invalidate'))
        self.assertEqual(0, self.resyncs('gap'))
        self.assertEqual(1, self.metrics.value(
            'consumer_table_invalidations_total', stream=self.STREAM,
            table='instances', cause='upsert'))
        self.assertEqual(1, rec.status_info()['invalidated:instances:upsert'])
        self.assertEqual(reconciler.LIVE, rec.status)

    def test_later_deltas_of_the_table_are_superseded(self):
        """Deltas of the table up to the new watermark are skipped."""
        rec = self.synced()
        self.feed(rec, self.invalidate())
        later = self.host.write('instances', wire.UPDATE,
                                {'id': 1, 'name': 'later'})
        other = self.host.write('hosts', wire.UPDATE,
                                {'id': 1, 'name': 'h1b'})
        rec.poll()
        self.feed(rec, later)
        self.feed(rec, other)
        self.assertTablesConverged(rec)
        self.assertEqual(self.host.seq, rec.applied)

    def test_failed_reread_is_retried(self):
        """A refused snapshot leaves the invalidation pending, then retries."""
        rec = self.synced()
        self.feed(rec, self.invalidate())
        self.host.fail_snapshots = 1
        rec.poll()
        self.assertEqual(['instances'],
                         rec.status_info()['pending_invalidations'])
        rec.poll()
        self.assertEqual([], rec.status_info()['pending_invalidations'])
        self.assertTablesConverged(rec)
