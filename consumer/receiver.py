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

"""The ``poll`` receiver: the driver's own listener, driven by our threads.

oslo.messaging's notification listener hands every message to an
executor thread of its own, and our delivery policy makes that thread
wait until the message is persisted: hundreds of threads, each woken
several times per message. :class:`PollReceiver` asks the transport's
driver for the same poll-style listener the notification server uses
(same queues, pool, exchanges and connection: the driver keeps
declaring, reconnecting, fail-over, heartbeats, TLS and every
``[oslo_messaging_rabbit]`` option) and drives it itself:

* one receiving thread polls the listener (the driver also runs the
  acknowledgements on that thread, as it does for the server) and
  queues each message in the lane of the stream it names;
* one lane thread per followed stream (and one for anything else)
  takes everything queued, up to ``max_batch_messages``, and runs it
  through :meth:`consumer.listener.Endpoint.process` (verify, then one
  reconciler turn), so a stream whose lock is held delays only itself;
* one settler thread per stream holds the messages waiting to be
  persisted and acknowledges each once
  :meth:`consumer.reconciler.Reconciler.settle` allows it, or requeues
  it after ``ack_timeout``.

The delivery policy is :class:`~consumer.listener.Endpoint`'s, decided
by :meth:`~consumer.listener.Endpoint.decide`; only who waits changed.
It relies on the driver's ``listen_for_notifications`` returning a
``PollStyleListenerAdapter`` (:func:`driver_listener` checks it and the
listener falls back to oslo.messaging's listener otherwise).
"""

import threading
import time

from oslo_log import log

from consumer import listener as listener_mod

LOG = log.getLogger(__name__)

#: Longest wait of one poll while nothing arrives; it also bounds how
#: long an acknowledgement of an idle consumer waits (the driver sends
#: them from the polling thread).
IDLE_POLL = 0.1
#: Pause after an unexpected error of a poll (the driver retries
#: connection errors itself; this only keeps a bug from spinning).
POLL_ERROR_PAUSE = 1.0
#: Longest wait of a settler before it looks at its messages again
#: (those discarded by the reconciler, and deadlines).
SETTLE_SLICE = 0.1
#: Longest wait at stop for the driver to send the acknowledgements
#: queued before its connection closes.
DRAIN_TIMEOUT = 5.0
#: Priorities listened to: those :class:`consumer.listener.Endpoint`
#: has a method for (what the notification dispatcher listens to).
PRIORITIES = ('audit', 'error', 'info', 'warn')
#: Drivers whose poll-style listener was checked with this receiver.
_DRIVERS = (('oslo_messaging._drivers.amqpdriver', 'AMQPDriverBase'),
            ('oslo_messaging._drivers.impl_fake', 'FakeDriver'))


def _known_driver(driver):
    import importlib
    for module, name in _DRIVERS:
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        if isinstance(driver, cls):
            return True
    return False


def driver_listener(transport, targets, pool):
    """The driver's poll-style listener of ``targets``, or None.

    None when the transport's driver is not one this receiver was
    checked with, or its listener lacks what is used here (another
    oslo.messaging version): the caller then uses oslo.messaging's
    notification listener.
    """
    listen = getattr(transport, '_listen_for_notifications', None)
    if listen is None or not _known_driver(getattr(transport, '_driver',
                                                   None)):
        return None
    adapter = listen([(target, priority) for target in targets
                      for priority in PRIORITIES], pool, 1, None)
    raw = getattr(adapter, '_poll_style_listener', None)
    if raw is None or not all(callable(getattr(raw, name, None))
                              for name in ('poll', 'stop', 'cleanup')):
        adapter.cleanup()
        return None
    return raw


class _Entry(object):
    __slots__ = ('message', 'incoming', 'deadline', 'requeue_at')

    def __init__(self, message, incoming, deadline, requeue_at=None):
        self.message = message
        self.incoming = incoming
        self.deadline = deadline
        self.requeue_at = requeue_at


def _ack(incoming):
    try:
        incoming.acknowledge()
    except Exception as exc:  # noqa: the broker redelivers it
        LOG.warning('Failed to acknowledge a message: %s', exc)


def _requeue(incoming):
    try:
        incoming.requeue()
    except Exception as exc:  # noqa: the broker redelivers it
        LOG.warning('Failed to requeue a message: %s', exc)


class _Worker(object):
    """A daemon thread working through what other threads add to it.

    :param name: the thread's name.
    """

    def __init__(self, name):
        self._cond = threading.Condition()
        self._items = []
        self._stopping = False
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=name)

    def start(self):
        self._thread.start()

    def add(self, item):
        with self._cond:
            self._items.append(item)
            self._cond.notify()

    def stop(self):
        """Work through what was added, then end."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()

    def _wait_for_items(self):
        """Wait (holding ``_cond``) for an item; False: stopped, none left."""
        while not self._items and not self._stopping:
            self._cond.wait()
        return bool(self._items)

    def _run(self):
        raise NotImplementedError


class _Settler(_Worker):
    """Acknowledges one stream's messages once they may be.

    :param reconciler: the stream's reconciler.
    :param requeued: the stream's ``consumer_requeued`` counter.
    """

    def __init__(self, reconciler, requeued):
        super().__init__('consumer-settle')
        self._reconciler = reconciler
        self._requeued = requeued

    def _run(self):
        # On stop, what is held is still settled, each within its
        # deadline.
        while True:
            with self._cond:
                if not self._wait_for_items():
                    return
                entries = list(self._items)
            done = self._settle(entries)
            with self._cond:
                self._items = [e for e in self._items if id(e) not in done]
                waiting = [e for e in self._items if e.requeue_at is None]
            if len(done) < len(entries):
                self._wait(entries, done, waiting)

    def _settle(self, entries):
        """Acknowledge or requeue what is due; the ids of those done."""
        now = time.monotonic()
        done = set()
        for entry in entries:
            if entry.requeue_at is not None:
                if now < entry.requeue_at:
                    continue
                _requeue(entry.incoming)
            elif self._reconciler.settle(entry.message, 0.0):
                _ack(entry.incoming)
            elif now >= entry.deadline:
                self._requeued.inc()
                _requeue(entry.incoming)
            else:
                continue
            done.add(id(entry))
        return done

    def _wait(self, entries, done, waiting):
        """Wait for the lowest held seq to be persisted, or a slice."""
        now = time.monotonic()
        due = [e.requeue_at if e.requeue_at is not None else e.deadline
               for e in entries if id(e) not in done]
        timeout = max(0.0, min([SETTLE_SLICE] + [d - now for d in due]))
        if waiting:
            lowest = min(waiting, key=lambda e: e.message.last_seq)
            if self._reconciler.settle(lowest.message, timeout):
                return
            # settle returns at once while the reconciler stops: wait
            # out the rest of the slice instead of spinning.
            timeout -= time.monotonic() - now
        if timeout > 0:
            with self._cond:
                self._cond.wait(timeout)


class _Lane(_Worker):
    """Messages of one stream (or of none): processed in batches.

    :param endpoint: the :class:`consumer.listener.Endpoint`.
    :param settlers: ``{stream: _Settler}``.
    :param max_batch: most messages per :meth:`Endpoint.process`.
    :param ack_timeout: longest wait for a message to be persisted.
    """

    def __init__(self, endpoint, settlers, max_batch, ack_timeout):
        super().__init__('consumer-lane')
        self._endpoint = endpoint
        self._settlers = settlers
        self._max_batch = max_batch
        self._ack_timeout = ack_timeout

    def _run(self):
        # Items are ``(notification, incoming)``.
        while True:
            with self._cond:
                if not self._wait_for_items():
                    return
                batch = self._items[:self._max_batch]
                del self._items[:len(batch)]
            self._process(batch)

    def _process(self, batch):
        try:
            results = self._endpoint.process([n for n, _i in batch])
        except Exception as exc:  # noqa: each message handles it below
            results = [(None, exc)] * len(batch)
        for (notification, incoming), (message, outcome) in zip(batch,
                                                                results):
            try:
                self._settle(message, outcome, incoming)
            except Exception:  # noqa: counted, logged, acknowledged
                self._endpoint.failed(notification[0])
                _ack(incoming)

    def _settle(self, message, outcome, incoming):
        action = self._endpoint.decide(message, outcome)
        if action == listener_mod.ACK:
            _ack(incoming)
            return
        now = time.monotonic()
        if action == listener_mod.PAUSE:
            # Some stream's store is unavailable: requeued after a pause
            # (the settler of any stream keeps it that long).
            settler = next(iter(self._settlers.values()))
            settler.add(_Entry(message, incoming, now, now +
                               listener_mod.REQUEUE_PAUSE))
            return
        self._settlers[message.stream].add(
            _Entry(message, incoming, now + self._ack_timeout))


class PollReceiver(object):
    """Receives notifications on the driver's poll-style listener.

    :param raw: the listener (:func:`driver_listener`).
    :param endpoint: the :class:`consumer.listener.Endpoint`.
    :param reconcilers: ``{stream: Reconciler}``.
    :param metrics: a :class:`consumer.metrics.ConsumerMetrics`.
    :param max_batch: most messages per batch of a lane.
    :param ack_timeout: longest wait for a message to be persisted.
    """

    def __init__(self, raw, endpoint, reconcilers, metrics, max_batch,
                 ack_timeout):
        self._raw = raw
        self._endpoint = endpoint
        self._settlers = {
            stream: _Settler(reconciler,
                             metrics.requeued.labels(stream=stream))
            for stream, reconciler in reconcilers.items()}
        self._lanes = {stream: _Lane(endpoint, self._settlers, max_batch,
                                     ack_timeout)
                       for stream in reconcilers}
        self._other = _Lane(endpoint, self._settlers, max_batch,
                            ack_timeout)
        self._stopping = False
        #: Never set: paces polling after an unexpected error.
        self._failed = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='consumer-receive')

    def _workers(self):
        return list(self._lanes.values()) + [self._other]

    def start(self):
        for settler in self._settlers.values():
            settler.start()
        for lane in self._workers():
            lane.start()
        self._thread.start()

    def stop(self):
        """Stop receiving; settle what was received; close."""
        self._stopping = True
        self._raw.stop()
        self._thread.join()
        for lane in self._workers():
            lane.stop()
        for settler in self._settlers.values():
            settler.stop()
        self._drain_operations()
        self._raw.cleanup()

    def _drain_operations(self):
        """Wait until the driver ran the acks queued while stopping.

        The rabbit driver runs acknowledgements and requeues on the
        polling thread, and after ``stop()`` on a thread of its own until
        ``cleanup()``, which closes the connection: an ack still queued
        then fails ("connection already closed") and the broker would
        redeliver a message whose effect is persisted. A marker queued
        behind them runs once they ran (the queue is first in, first
        out). A driver without that queue (``fake://``) acknowledges at
        once.
        """
        handler = getattr(self._raw, '_message_operations_handler', None)
        if handler is None or not callable(getattr(handler, 'do', None)):
            return
        ran = threading.Event()
        handler.do(ran.set)
        if not ran.wait(DRAIN_TIMEOUT):
            LOG.warning('Acknowledgements still queued after %s s; the '
                        'broker redelivers those messages', DRAIN_TIMEOUT)

    def _run(self):
        while True:
            try:
                incoming = self._raw.poll(timeout=IDLE_POLL)
            except Exception:  # noqa: the driver reconnects; go on
                LOG.exception('Polling the notification listener failed')
                if self._stopping:
                    return
                self._failed.wait(POLL_ERROR_PAUSE)
                continue
            if not incoming:
                if self._stopping:
                    return
                continue
            for one in incoming:
                self._take(one)

    def _take(self, incoming):
        publisher_id = None
        try:
            message = incoming.message
            publisher_id = message.get('publisher_id')
            event_type = message.get('event_type')
            payload = message.get('payload')
            priority = message.get('priority')
            priority = priority.lower() if isinstance(priority, str) \
                else None
            if priority not in PRIORITIES:
                # What oslo.messaging's dispatcher drops (and acks).
                LOG.warning('Unknown priority "%s"', priority)
                _ack(incoming)
                return
            key = self._endpoint.route(publisher_id, event_type, payload,
                                       priority)
        except Exception:  # noqa: counted, logged, acknowledged
            self._endpoint.failed(publisher_id)
            _ack(incoming)
            return
        if key is None:
            _ack(incoming)
            return
        lane = self._lanes.get(key, self._other)
        lane.add(((publisher_id, event_type, payload), incoming))
