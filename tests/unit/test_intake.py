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

"""Tests of the listener's intake and of Reconciler.handle_many.

The intake: results reach their own thread, batches keep arrival order
and form only while a batch is in progress. ``handle_many``: a batch in
any order, with duplicates, converges like one-by-one handling, applies
its contiguous run in one turn, and reports each message's outcome.
"""

import os
import threading
import time

import fixtures
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import oslo_messaging as messaging

from consumer import exceptions
from consumer import intake
from consumer import listener
from consumer import metrics as metrics_mod
from consumer import reconciler
from consumer import verify
from oslo_publish import wire
from tests import base
from tests.unit import fakehost
from tests.unit import test_reconciler


class TestIntake(base.TestCase):

    def test_idle_item_is_processed_at_once_by_its_thread(self):
        """With nothing in progress the caller processes its own item."""
        seen = []

        def process(items):
            seen.append((threading.current_thread(), list(items)))
            return [item * 2 for item in items]

        box = intake.Intake(process)
        self.assertEqual(6, box.submit(3))
        self.assertEqual([(threading.current_thread(), [3])], seen)

    def test_items_queued_during_a_batch_form_the_next_in_order(self):
        """What arrives during a batch is the next batch, arrival order."""
        batches = []
        entered = threading.Event()
        release = threading.Event()

        def process(items):
            batches.append(list(items))
            if items == ['first']:
                entered.set()
                release.wait(10)
            return ['done-%s' % item for item in items]

        box = intake.Intake(process)
        results = {}

        def submit(item):
            results[item] = box.submit(item)

        first = threading.Thread(target=submit, args=('first',))
        first.start()
        self.assertTrue(entered.wait(10))
        others = []
        for name in ('a', 'b', 'c'):
            thread = threading.Thread(target=submit, args=(name,))
            thread.start()
            others.append(thread)
            deadline = time.monotonic() + 10
            while len(box._queue) < len(others) and \
                    time.monotonic() < deadline:
                time.sleep(0.001)
        release.set()
        for thread in [first] + others:
            thread.join(10)
        self.assertEqual([['first'], ['a', 'b', 'c']], batches)
        self.assertEqual({'first': 'done-first', 'a': 'done-a',
                          'b': 'done-b', 'c': 'done-c'}, results)

    def test_max_batch_splits_the_queue(self):
        """No batch holds more than max_batch items."""
        batches = []
        box = intake.Intake(lambda items: batches.append(list(items)) or
                            list(items), max_batch=2)
        box._queue.extend(intake._Item(i, threading.Condition(box._lock))
                          for i in (1, 2, 3))
        self.assertEqual(4, box.submit(4))
        self.assertEqual([[1, 2], [3, 4]], batches)

    def test_failing_process_hands_its_error_to_every_item(self):
        """An exception of process() is the result of the whole batch."""
        def process(items):
            raise ValueError('boom')

        result = intake.Intake(process).submit('x')
        self.assertIsInstance(result, ValueError)


class TestHandleMany(test_reconciler.ReconcilerTestCase):

    def verified(self, payload):
        event = wire.EVENT_HEARTBEAT if payload['kind'] == 'heartbeat' \
            else wire.EVENT_DELTA
        return self.verifier.verify(wire.publisher_id(self.STREAM), event,
                                    payload)

    def test_batch_in_any_order_is_applied_in_one_turn(self):
        """Reordered messages of a batch apply as one cache update."""
        rec = self.synced()
        payloads = [self.host.write('instances', wire.UPDATE,
                                    {'id': i, 'name': 'b%d' % i})
                    for i in (1, 2, 3)]
        generation = self.cache.view().generation
        results = rec.handle_many([self.verified(p) for p in
                                   reversed(payloads)])
        self.assertEqual(['applied'] * 3, results)
        self.assertEqual(generation + 1, self.cache.view().generation)
        rec.poll()
        self.assertConverged(rec)

    def test_outcomes_per_message(self):
        """Replayed, heartbeat and a hole are reported message by message."""
        rec = self.synced()
        old = self.host.write('instances', wire.UPDATE,
                              {'id': 1, 'name': 'x'})
        self.feed(rec, old)
        self.host.write('instances', wire.UPDATE, {'id': 2, 'name': 'lost'})
        ahead = self.host.write('instances', wire.UPDATE,
                                {'id': 3, 'name': 'y'})
        results = rec.handle_many([self.verified(old),
                                   self.verified(self.host.heartbeat()),
                                   self.verified(ahead)])
        self.assertIsInstance(results[0], exceptions.Rejected)
        self.assertEqual('replayed', results[0].reason)
        self.assertEqual(['heartbeat', 'buffered'], results[1:])
        self.assertEqual(1, self.metrics.value(
            'consumer_rejected_total', stream=self.STREAM,
            reason='replayed'))

    def test_batch_larger_than_the_window_is_not_a_gap(self):
        """More transactions than reorder_window in order: no resync."""
        rec = self.synced()
        payloads = [self.host.write('instances', wire.UPDATE,
                                    {'id': 1 + i % 5, 'name': 'w%d' % i})
                    for i in range(35)]  # the window is 10
        results = rec.handle_many([self.verified(p) for p in payloads])
        self.assertEqual(['applied'] * 35, results)
        rec.poll()
        self.assertEqual(0, self.resyncs('gap'))
        self.assertConverged(rec)

    @settings(max_examples=int(os.environ.get('CONSUMER_FUZZ_EXAMPLES', 40)),
              deadline=None)
    @given(st.data())
    def test_any_batching_of_any_order_converges(self, data):
        """Shuffled, duplicated deliveries cut into batches converge."""
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
            if (key,) not in host.tables['instances']['rows']:
                op = wire.INSERT
            else:
                op = data.draw(st.sampled_from([wire.UPDATE, wire.DELETE]))
            messages.append(host.write('instances', op, {
                'id': key, 'name': 'v%d' % host.seq}))
        order = list(data.draw(st.permutations(messages), label='order'))
        order += data.draw(st.lists(st.sampled_from(messages), max_size=5),
                           label='duplicates')
        while order:
            size = data.draw(st.integers(1, len(order)), label='batch')
            batch, order = order[:size], order[size:]
            rec.handle_many([self.verified(p) for p in batch])
        self.clock.advance(1.0)
        rec.poll()
        self.assertConverged(rec)


class TestEndpointBatches(test_reconciler.ReconcilerTestCase):

    def test_every_message_settles_and_rejections_are_counted(self):
        """Concurrent deliveries: all acked once durable, bad counted."""
        rec = self.synced()
        endpoint = listener.Endpoint(self.verifier, {self.STREAM: rec},
                                     self.metrics, ack_timeout=10.0)
        payloads = [self.host.write('instances', wire.UPDATE,
                                    {'id': 1 + i % 5, 'name': 'e%d' % i})
                    for i in range(20)]
        bad = dict(payloads[0], first_seq='one')
        results = []

        def deliver(payload):
            results.append(endpoint.handle(wire.publisher_id(self.STREAM),
                                           wire.EVENT_DELTA, payload))

        threads = [threading.Thread(target=deliver, args=(p,))
                   for p in payloads + [bad]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        self.assertEqual([messaging.NotificationResult.HANDLED] * 21,
                         results)
        self.assertEqual(1, self.metrics.value(
            'consumer_rejected_total', stream=self.STREAM,
            reason='malformed'))
        self.assertEqual(self.host.seq, rec.durable)
        self.assertConverged(rec)

    def test_state_store_failure_requeues_the_batch_deltas(self):
        """A drain that cannot persist requeues, and nothing is lost."""
        rec = self.synced()
        endpoint = listener.Endpoint(self.verifier, {self.STREAM: rec},
                                     self.metrics, ack_timeout=1.0)
        self.useFixture(fixtures.MockPatchObject(listener, 'REQUEUE_PAUSE',
                                                 0.0))
        payload = self.host.write('instances', wire.UPDATE,
                                  {'id': 1, 'name': 'z'})
        failing = reconciler.StateUnavailable('down')
        original = rec._drain

        def drain(now):
            raise failing

        rec._drain = drain
        self.assertEqual(messaging.NotificationResult.REQUEUE,
                         endpoint.handle(wire.publisher_id(self.STREAM),
                                         wire.EVENT_DELTA, payload))
        rec._drain = original
        self.assertEqual(messaging.NotificationResult.HANDLED,
                         endpoint.handle(wire.publisher_id(self.STREAM),
                                         wire.EVENT_DELTA, payload))
        self.assertConverged(rec)


class TestHandleManyBeforeSync(test_reconciler.ReconcilerTestCase):

    def test_batch_before_the_snapshot_is_buffered(self):
        """Before the initial snapshot a batch only buffers."""
        rec = self.make()
        payload = self.host.write('instances', wire.UPDATE,
                                  {'id': 1, 'name': 'early'})
        message = self.verifier.verify(wire.publisher_id(self.STREAM),
                                       wire.EVENT_DELTA, payload)
        self.assertEqual(['buffered'], rec.handle_many([message]))
        rec.poll()
        self.assertConverged(rec)


class _StubVerifier(object):

    def stream_label(self, stream):
        return stream

    def verify(self, publisher_id, event_type, payload):
        return verify.Message(wire.KIND_DELTA, payload['stream'],
                              publisher_id, 1, 1, {}, ())


class _StubReconciler(object):

    def __init__(self, gate=None):
        self.gate = gate
        self.entered = threading.Event()

    def handle_many(self, messages):
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        return ['applied'] * len(messages)

    def settle(self, message, timeout):
        return True


class TestEndpointStreams(base.TestCase):

    def test_a_blocked_stream_does_not_hold_up_another(self):
        """Each stream has its own intake."""
        gate = threading.Event()
        self.addCleanup(gate.set)
        slow, fast = _StubReconciler(gate), _StubReconciler()
        endpoint = listener.Endpoint(
            _StubVerifier(), {'a': slow, 'b': fast},
            metrics_mod.ConsumerMetrics())
        blocked = threading.Thread(target=endpoint.handle, args=(
            wire.publisher_id('a'), wire.EVENT_DELTA, {'stream': 'a'}))
        blocked.start()
        self.assertTrue(slow.entered.wait(10))
        results = []
        other = threading.Thread(target=lambda: results.append(
            endpoint.handle(wire.publisher_id('b'), wire.EVENT_DELTA,
                            {'stream': 'b'})))
        other.start()
        other.join(5)
        self.assertEqual([messaging.NotificationResult.HANDLED], results)
        gate.set()
        blocked.join(10)
        self.assertFalse(blocked.is_alive())
