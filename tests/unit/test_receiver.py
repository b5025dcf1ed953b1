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

"""Tests of the poll receiver: the listener's delivery policy, kept.

A message is acknowledged only once persisted (or deliberately
discarded), requeued after ``ack_timeout`` or while the state store is
unavailable; rejected messages are acknowledged and counted; messages of
other publishers go to the notification handlers. The receiver falls
back to oslo.messaging's listener on a driver it does not know.
"""

import queue
import threading
import time
from unittest import mock

import fixtures
import oslo_messaging as messaging

from consumer import listener
from consumer import metrics as metrics_mod
from consumer import receiver
from consumer import reconciler
from consumer import verify
from oslo_publish import wire
from tests import base
from tests.unit import test_reconciler

#: Longest wait for something that must happen.
WAIT = 10.0
#: How long something that must not happen is given to happen anyway.
QUIET = 0.3


class _Incoming(object):
    """What the driver's poll-style listener returns."""

    def __init__(self, publisher_id, event_type, payload, priority='INFO'):
        self.message = {'publisher_id': publisher_id,
                        'event_type': event_type, 'payload': payload,
                        'priority': priority}
        self.acked = threading.Event()
        self.requeued = threading.Event()

    def acknowledge(self):
        self.acked.set()

    def requeue(self):
        self.requeued.set()


class _RawListener(object):

    def __init__(self):
        self._queue = queue.Queue()
        self.stopped = False
        self.cleaned = False

    def deliver(self, incoming):
        self._queue.put(incoming)
        return incoming

    def poll(self, timeout=None):
        try:
            return [self._queue.get(timeout=timeout)]
        except queue.Empty:
            return []

    def stop(self):
        self.stopped = True

    def cleanup(self):
        self.cleaned = True


class _Operations(object):
    """The rabbit driver's queue of acks, run late on a thread of its own.

    Like the driver's, a task runs some time after it was queued (the
    driver runs them between polls): ``LATE`` seconds here.
    """

    LATE = 0.2

    def __init__(self, raw):
        self._raw = raw
        self._tasks = queue.Queue()
        threading.Thread(target=self._run, daemon=True).start()

    def do(self, task):
        self._tasks.put(task)

    def _run(self):
        while True:
            task = self._tasks.get()
            time.sleep(self.LATE)  # the driver's delay, not a wait for us
            task()


class _QueuedAckIncoming(_Incoming):
    """Acknowledged through the listener's queue, on an open connection."""

    def __init__(self, raw, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._raw = raw
        self.acked_after_close = threading.Event()

    def acknowledge(self):
        def ack():
            if self._raw.cleaned:
                self.acked_after_close.set()  # "connection already closed"
            else:
                self.acked.set()
        self._raw._message_operations_handler.do(ack)


class _GatedReconciler(object):
    """Applies everything; persisted once ``persisted`` is set."""

    def __init__(self, outcome='applied'):
        self.outcome = outcome
        self.persisted = threading.Event()

    def handle_many(self, messages):
        return [self.outcome] * len(messages)

    def settle(self, message, timeout):
        return self.persisted.wait(timeout)


class _StubVerifier(object):

    def stream_label(self, stream):
        return stream

    def reject(self, stream, reason, detail):
        return None

    def verify(self, publisher_id, event_type, payload):
        return verify.Message(wire.KIND_DELTA, payload['stream'],
                              publisher_id, 1, 1, {}, ())


def _delta(stream='a'):
    return _Incoming(wire.publisher_id(stream), wire.EVENT_DELTA,
                     {'stream': stream})


class _Case(base.TestCase):

    def receive(self, endpoint, reconcilers, metrics, ack_timeout=WAIT):
        raw = _RawListener()
        rx = receiver.PollReceiver(raw, endpoint, reconcilers, metrics,
                                   max_batch=100, ack_timeout=ack_timeout)
        rx.start()
        self.addCleanup(rx.stop)
        return raw


class TestPolicyStubs(_Case):

    def setUp(self):
        super().setUp()
        self.metrics = metrics_mod.ConsumerMetrics()

    def endpoint(self, rec, ack_timeout=WAIT):
        return listener.Endpoint(_StubVerifier(), {'a': rec}, self.metrics,
                                 ack_timeout=ack_timeout)

    def test_acknowledged_only_once_persisted(self):
        rec = _GatedReconciler()
        raw = self.receive(self.endpoint(rec), {'a': rec}, self.metrics)
        incoming = raw.deliver(_delta())
        self.assertFalse(incoming.acked.wait(QUIET))
        rec.persisted.set()
        self.assertTrue(incoming.acked.wait(WAIT))
        self.assertFalse(incoming.requeued.is_set())

    def test_requeued_after_ack_timeout(self):
        rec = _GatedReconciler()
        raw = self.receive(self.endpoint(rec, 0.2), {'a': rec},
                           self.metrics, ack_timeout=0.2)
        incoming = raw.deliver(_delta())
        self.assertTrue(incoming.requeued.wait(WAIT))
        self.assertFalse(incoming.acked.is_set())
        self.assertEqual(1, self.metrics.value(
            'consumer_messages_requeued_total', stream='a'))

    def test_state_store_unavailable_requeues_after_a_pause(self):
        self.useFixture(fixtures.MockPatchObject(listener, 'REQUEUE_PAUSE',
                                                 0.05))
        rec = _GatedReconciler(reconciler.StateUnavailable('down'))
        raw = self.receive(self.endpoint(rec), {'a': rec}, self.metrics)
        incoming = raw.deliver(_delta())
        self.assertTrue(incoming.requeued.wait(WAIT))
        self.assertFalse(incoming.acked.is_set())

    def test_other_publishers_go_to_the_notification_handlers(self):
        rec = _GatedReconciler()
        router = mock.Mock()
        router.offer.side_effect = lambda p, e, payload, prio: \
            e == 'compute.instance.update'
        endpoint = listener.Endpoint(_StubVerifier(), {'a': rec},
                                     self.metrics, notifications=router)
        raw = self.receive(endpoint, {'a': rec}, self.metrics)
        wanted = raw.deliver(_Incoming('nova-compute',
                                       'compute.instance.update',
                                       {'x': 1}, priority='WARN'))
        unwanted = raw.deliver(_Incoming('nova-compute', 'other', {}))
        self.assertTrue(wanted.acked.wait(WAIT))
        self.assertTrue(unwanted.acked.wait(WAIT))
        router.offer.assert_any_call('nova-compute',
                                     'compute.instance.update', {'x': 1},
                                     'warn')

    def test_stop_settles_what_is_held(self):
        rec = _GatedReconciler()
        raw = _RawListener()
        rx = receiver.PollReceiver(raw, self.endpoint(rec), {'a': rec},
                                   self.metrics, max_batch=10,
                                   ack_timeout=WAIT)
        rx.start()
        incoming = raw.deliver(_delta())
        stopper = threading.Thread(target=rx.stop)
        stopper.start()
        self.assertFalse(incoming.acked.wait(QUIET))
        rec.persisted.set()
        stopper.join(WAIT)
        self.assertFalse(stopper.is_alive())
        self.assertTrue(incoming.acked.is_set())
        self.assertTrue(raw.stopped)
        self.assertTrue(raw.cleaned)

    def test_stop_waits_for_the_driver_to_send_queued_acks(self):
        """Acks queued while stopping go out before the connection closes."""
        rec = _GatedReconciler()
        rec.persisted.set()
        raw = _RawListener()
        raw._message_operations_handler = _Operations(raw)
        rx = receiver.PollReceiver(raw, self.endpoint(rec), {'a': rec},
                                   self.metrics, max_batch=10,
                                   ack_timeout=WAIT)
        rx.start()
        incoming = raw.deliver(_QueuedAckIncoming(
            raw, wire.publisher_id('a'), wire.EVENT_DELTA, {'stream': 'a'}))
        rx.stop()
        self.assertTrue(raw.cleaned)
        self.assertTrue(incoming.acked.is_set())
        self.assertFalse(incoming.acked_after_close.is_set())


class TestPollReceiverReconciler(test_reconciler.ReconcilerTestCase,
                                 _Case):

    def test_deltas_and_bad_input_converge_and_are_acknowledged(self):
        rec = self.synced()
        endpoint = listener.Endpoint(self.verifier, {self.STREAM: rec},
                                     self.metrics, ack_timeout=WAIT)
        raw = self.receive(endpoint, {self.STREAM: rec}, self.metrics)
        payloads = [self.host.write('instances', wire.UPDATE,
                                    {'id': 1 + i % 5, 'name': 'p%d' % i})
                    for i in range(20)]
        bad = dict(payloads[0], first_seq='one')
        sent = [raw.deliver(_Incoming(wire.publisher_id(self.STREAM),
                                      wire.EVENT_DELTA, p))
                for p in payloads + [bad, payloads[3]]]
        for incoming in sent:
            self.assertTrue(incoming.acked.wait(WAIT))
            self.assertFalse(incoming.requeued.is_set())
        self.assertEqual(1, self.metrics.value(
            'consumer_rejected_total', stream=self.STREAM,
            reason='malformed'))
        self.assertEqual(self.host.seq, rec.durable)
        self.assertConverged(rec)


class TestListenerChoice(base.TestCase):

    def setUp(self):
        super().setUp()
        self.conf.set_override('transport_url', 'fake:///')
        self.conf.set_override('topics', ['t'], 'consumer')
        self.conf.set_override('streams', ['a'], 'consumer')
        self.transport = messaging.get_notification_transport(self.conf)
        self.addCleanup(self.transport.cleanup)
        self.metrics = metrics_mod.ConsumerMetrics()
        self.rec = _GatedReconciler()
        self.rec.persisted.set()
        self.endpoint = listener.Endpoint(_StubVerifier(), {'a': self.rec},
                                          self.metrics)

    def started(self, transport=None):
        lst = listener.Listener(self.conf, transport or self.transport,
                                self.endpoint, {'a': self.rec},
                                self.metrics)
        lst.start()
        self.addCleanup(lst.stop)
        return lst

    def test_poll_receiver_on_a_known_driver(self):
        lst = self.started()
        self.assertEqual('poll', lst.receiver)
        lst.stop()
        lst.stop()  # a second stop does nothing

    def test_option_selects_the_oslo_messaging_listener(self):
        self.conf.set_override('receiver', 'listener', 'consumer')
        self.assertEqual('listener', self.started().receiver)

    def test_unknown_driver_falls_back_to_the_listener(self):
        other = mock.Mock(wraps=self.transport)
        other._driver = object()
        self.assertIsNone(receiver.driver_listener(
            other, [messaging.Target(topic='t')], 'pool'))
        with mock.patch.object(receiver, '_known_driver',
                               return_value=False):
            self.assertEqual('listener', self.started().receiver)

    def test_delta_through_the_fake_driver_is_received(self):
        lst = self.started()
        self.assertEqual('poll', lst.receiver)
        notifier = messaging.Notifier(self.transport, wire.publisher_id('a'),
                                      driver='messaging', topics=['t'])
        handled = threading.Event()
        self.rec.handle_many = lambda messages: (
            handled.set(), ['applied'] * len(messages))[1]
        notifier.info({}, wire.EVENT_DELTA, {'stream': 'a'})
        self.assertTrue(handled.wait(WAIT))
