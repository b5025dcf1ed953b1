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

"""The notification listener of the push driver.

One notification listener per consumer service (by default the driver's own
listener polled by :mod:`consumer.receiver`; with ``[consumer] receiver =
listener`` oslo.messaging's, ``threading`` executor), listening on
``Target(topic=t)`` for each of ``[consumer] topics`` (on the exchange of
each stream, ``[consumer] exchanges``, by default ``control_exchange``) in
a pool of its own (``[consumer] pool``, default ``consumer-<hostname>``):
every pool gets every delta. The pool's queue is not auto-deleted, so
deltas wait in RabbitMQ while the consumer is down. It survives a broker
restart too when ``[oslo_messaging_rabbit] amqp_durable_queues = true``;
that option also sets the durability of the exchange, which the consumer
shares with the host service, so it must have the same value on both sides
(oslo.messaging's default, false, unless the deployment turns it on
everywhere). A consumer never changes it on its own: declaring the host's
control exchange durable first would break the host's publishers and RPC
servers. When the broker loses a non-durable queue, the consumer sees the
gap and resynchronises.

Delivery policy of :class:`Endpoint` (it never raises):

* a delta is acknowledged (``HANDLED``) only once its effect is in the
  state store, or it was deliberately discarded
  (:meth:`consumer.reconciler.Reconciler.settle`): the cache may show it
  earlier, but a crash before it is persisted leaves it on the broker,
  which redelivers it. Held longer than ``[consumer] ack_timeout`` it is
  requeued (``REQUEUE``), never acknowledged;
* a redelivered duplicate (``replayed``) is acknowledged once the first
  copy's effect is persisted;
* any other rejected message is acknowledged: redelivering it would not
  make it better; it is counted and logged by reason;
* when the state store is unavailable the message is requeued
  (``REQUEUE``) after a short pause and the broker keeps it;
* messages of other publishers are offered to the notification handlers
  (:mod:`consumer.notifications`); when none wants them they are rejected
  as ``unknown_publisher``;
* any unexpected error is logged with its traceback, counted (reason
  ``error``) and the message acknowledged.
"""

import socket
import threading

import oslo_messaging as messaging
from oslo_log import log

from consumer import exceptions
from consumer import intake as intake_mod
from consumer import receiver as receiver_mod
from consumer import reconciler as reconciler_mod
from oslo_publish import wire

LOG = log.getLogger(__name__)

RABBIT_GROUP = 'oslo_messaging_rabbit'
#: Pause before requeueing while the state store is unavailable.
REQUEUE_PAUSE = 0.5
#: Intake key of messages that name no followed stream.
OTHER = object()
#: What :meth:`Endpoint.decide` asks for.
ACK = 'ack'
PAUSE = 'pause'
SETTLE = 'settle'


def prepare_transport_conf(conf):
    """Register oslo.messaging's rabbit options (defaults unchanged).

    ``amqp_durable_queues`` keeps oslo.messaging's default: it also decides
    the durability of the exchange shared with the host service, so only
    the deployment may set it, on both sides alike.
    """
    from oslo_messaging import opts as messaging_opts
    for group, opts in messaging_opts.list_opts():
        if group == RABBIT_GROUP:
            conf.register_opts(opts, group=RABBIT_GROUP)


def pool_name(conf):
    """The listener pool (queue) of this consumer service."""
    return conf.consumer.pool or 'consumer-%s' % socket.gethostname()


def exchanges(conf):
    """Exchanges to listen on: those of ``[consumer] exchanges``.

    None stands for this service's ``control_exchange`` and is included
    when a followed stream is not listed.
    """
    mapping = conf.consumer.exchanges
    found = []
    for stream in conf.consumer.streams or [None]:
        exchange = mapping.get(stream) if stream else None
        if exchange not in found:
            found.append(exchange)
    return found


def _ours(publisher_id, event_type):
    return (isinstance(event_type, str)
            and event_type.startswith(wire.PUBLISHER_PREFIX)) or \
        (isinstance(publisher_id, str)
         and publisher_id.startswith(wire.PUBLISHER_PREFIX))


class Endpoint(object):
    """Notification endpoint: verify -> reconcile; never raises.

    The executor threads hand the messages of this service's publishers
    to the :class:`consumer.intake.Intake` of the stream they name:
    whichever thread finds no
    batch in progress verifies everything queued, in arrival order, and
    gives each stream's messages to its reconciler in one turn
    (:meth:`consumer.reconciler.Reconciler.handle_many`). Each thread
    then settles its own message (waits until it is persisted) and
    returns what the broker should do with it.

    :param verifier: a :class:`consumer.verify.Verifier`.
    :param reconcilers: ``{stream: Reconciler}``.
    :param metrics: a :class:`consumer.metrics.ConsumerMetrics`.
    :param notifications: optional
        :class:`consumer.notifications.NotificationRouter`.
    :param allowed_publishers: extra publisher ids that speak the wire
        format (``[consumer] allowed_publishers``).
    :param ack_timeout: longest wait for a message's effect to be
        persisted before it is requeued.
    :param max_batch: most messages verified and reconciled in one
        batch (``[consumer] max_batch_messages``).
    """

    def __init__(self, verifier, reconcilers, metrics, notifications=None,
                 allowed_publishers=(), ack_timeout=60.0, max_batch=1000):
        self._ack_timeout = ack_timeout
        self._verifier = verifier
        self._reconcilers = reconcilers
        self._metrics = metrics
        self._notifications = notifications
        self._allowed = frozenset(allowed_publishers)
        self._pause = threading.Event()
        #: One intake per followed stream (chosen by the stream the
        #: payload names; the verifier checks the claim), so a stream
        #: whose lock is held (a resync installing) delays only its own
        #: messages; one more for anything else.
        self._intakes = {stream: intake_mod.Intake(self.process, max_batch)
                         for stream in reconcilers}
        self._other = intake_mod.Intake(self.process, max_batch)

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        return self.handle(publisher_id, event_type, payload, 'info')

    def audit(self, ctxt, publisher_id, event_type, payload, metadata):
        return self.handle(publisher_id, event_type, payload, 'audit')

    def warn(self, ctxt, publisher_id, event_type, payload, metadata):
        return self.handle(publisher_id, event_type, payload, 'warn')

    def error(self, ctxt, publisher_id, event_type, payload, metadata):
        return self.handle(publisher_id, event_type, payload, 'error')

    def handle(self, publisher_id, event_type, payload, priority='info'):
        """Process one notification; return HANDLED or REQUEUE."""
        try:
            return self._handle(publisher_id, event_type, payload, priority)
        except Exception:  # noqa: nothing a publisher sends may escape
            self.failed(publisher_id)
            return messaging.NotificationResult.HANDLED

    def failed(self, publisher_id):
        """Log and count an unexpected error (the message is then acked)."""
        LOG.exception('Unexpected error handling a message of %s',
                      self._safe(publisher_id))
        try:
            self._metrics.rejected.labels(stream='-', reason='error').inc()
        except Exception:  # noqa: metrics must not raise either
            pass

    @staticmethod
    def _safe(text):
        return text[:100] if isinstance(text, str) else type(text).__name__

    def route(self, publisher_id, event_type, payload, priority):
        """First step of a notification: counted, routed.

        :returns: None when it is dealt with (offered to the notification
            handlers, or rejected as ``unknown_publisher``: acknowledge
            it); otherwise the key of the intake it goes to (the stream
            it names, or :data:`OTHER`).
        """
        stream = payload.get('stream') if isinstance(payload, dict) \
            else None
        label = self._verifier.stream_label(stream)
        self._metrics.messages_received.labels(stream=label).inc()
        allowed = isinstance(publisher_id, str) and \
            publisher_id in self._allowed
        if not allowed and not _ours(publisher_id, event_type):
            if self._notifications is not None and \
                    self._notifications.offer(publisher_id, event_type,
                                              payload, priority):
                return None
            # Counted and logged; nothing to redeliver.
            self._verifier.reject(None, 'unknown_publisher', 'no handler '
                                  'for %s' % self._safe(publisher_id))
            return None
        if isinstance(stream, str) and stream in self._intakes:
            return stream
        return OTHER

    @staticmethod
    def decide(message, outcome):
        """What to do with a processed message: ACK, PAUSE or SETTLE.

        ``(message, outcome)`` is one result of :meth:`process`. ACK:
        acknowledge it now; PAUSE: the state store is unavailable,
        requeue it after :data:`REQUEUE_PAUSE`; SETTLE: acknowledge it
        once :meth:`consumer.reconciler.Reconciler.settle` says so,
        requeue it after ``ack_timeout``. An unexpected error is raised.
        """
        if isinstance(outcome, exceptions.Rejected):
            if message is None or outcome.reason != 'replayed':
                return ACK
            # A redelivered duplicate: acknowledged once what it carried
            # is persisted (the first copy may still be in flight).
        elif isinstance(outcome, reconciler_mod.StateUnavailable):
            return PAUSE
        elif isinstance(outcome, BaseException):
            raise outcome
        if message.is_heartbeat:
            return ACK
        return SETTLE

    def _handle(self, publisher_id, event_type, payload, priority):
        key = self.route(publisher_id, event_type, payload, priority)
        if key is None:
            return messaging.NotificationResult.HANDLED
        intake = self._intakes.get(key, self._other)
        message, outcome = intake.submit((publisher_id, event_type, payload))
        action = self.decide(message, outcome)
        if action == ACK:
            return messaging.NotificationResult.HANDLED
        if action == PAUSE:
            self._pause.wait(REQUEUE_PAUSE)
            return messaging.NotificationResult.REQUEUE
        reconciler = self._reconcilers[message.stream]
        if reconciler.settle(message, self._ack_timeout):
            return messaging.NotificationResult.HANDLED
        self._metrics.requeued.labels(stream=message.stream).inc()
        return messaging.NotificationResult.REQUEUE

    def process(self, items):
        """One batch of the intake: ``[(message or None, outcome)]``.

        Verifies each ``(publisher_id, event_type, payload)`` in order,
        then hands each stream's messages to its reconciler at once. The
        outcome is what :meth:`Reconciler.handle_many` returned for the
        message, or the exception that stopped it (a rejection by the
        verifier, or an unexpected error, re-raised by the message's own
        thread).
        """
        results = [None] * len(items)
        by_stream = {}
        for index, (publisher_id, event_type, payload) in enumerate(items):
            try:
                message = self._verifier.verify(publisher_id, event_type,
                                                payload)
                reconciler = self._reconcilers[message.stream]
            except Exception as exc:  # noqa: Rejected, or re-raised
                results[index] = (None, exc)
                continue
            by_stream.setdefault(message.stream, (reconciler, []))[1].append(
                (index, message))
        for reconciler, entries in by_stream.values():
            messages = [message for _index, message in entries]
            try:
                outcomes = reconciler.handle_many(messages)
            except Exception as exc:  # noqa: re-raised by each thread
                outcomes = [exc] * len(entries)
            for (index, message), outcome in zip(entries, outcomes):
                results[index] = (message, outcome)
        return results


class Listener(object):
    """The notification listener of one consumer service.

    With ``[consumer] receiver = poll`` (the default) messages are
    received by a :class:`consumer.receiver.PollReceiver` on the
    driver's own listener; with ``listener``, or when the driver does not
    offer what the receiver uses, by oslo.messaging's notification
    listener (``threading`` executor, one thread per waiting message).
    Either way the same queues, options and delivery policy.

    :param conf: ConfigOpts (call :func:`prepare_transport_conf` before
        the transport is created).
    :param transport: a notification transport.
    :param endpoint: an :class:`Endpoint`.
    :param reconcilers: ``{stream: Reconciler}`` (the poll receiver
        settles against them; None: the executor listener only).
    :param metrics: a :class:`consumer.metrics.ConsumerMetrics`.
    """

    def __init__(self, conf, transport, endpoint, reconcilers=None,
                 metrics=None):
        self.pool = pool_name(conf)
        self._targets = [messaging.Target(exchange=exchange, topic=topic)
                         for exchange in exchanges(conf)
                         for topic in conf.consumer.topics]
        self._transport = transport
        self._endpoint = endpoint
        self._reconcilers = reconcilers
        self._metrics = metrics
        self._mode = conf.consumer.receiver if reconcilers is not None \
            else 'listener'
        self._max_batch = max(1, conf.consumer.max_batch_messages)
        self._ack_timeout = conf.consumer.ack_timeout
        #: Executor threads: each waiting delta holds one until settled.
        self._threads = conf.consumer.listener_threads
        #: The receiver in use (set by :meth:`start`): ``poll`` or
        #: ``listener``.
        self.receiver = None
        self._listener = None

    def start(self):
        LOG.info('Listening on pool %s', self.pool)
        if self._mode == 'poll':
            raw = receiver_mod.driver_listener(self._transport,
                                               self._targets, self.pool)
            if raw is not None:
                self._listener = receiver_mod.PollReceiver(
                    raw, self._endpoint, self._reconcilers, self._metrics,
                    self._max_batch, self._ack_timeout)
                self._listener.start()
                self.receiver = 'poll'
                return
            LOG.info('The transport driver offers no poll-style listener '
                     'the poll receiver knows; using oslo.messaging\'s '
                     'notification listener')
        self._listener = messaging.get_notification_listener(
            self._transport, self._targets, [self._endpoint],
            executor='threading', pool=self.pool, allow_requeue=True)
        self._listener.start(override_pool_size=self._threads)
        self.receiver = 'listener'

    def stop(self):
        """Stop receiving; a second call does nothing."""
        stopping, self._listener = self._listener, None
        if stopping is None:
            return
        stopping.stop()
        if self.receiver == 'listener':
            stopping.wait()
