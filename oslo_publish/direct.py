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

"""Direct delivery (``delivery = direct``): best effort, no outbox.

:class:`DirectSink` is the capture's sink for direct mode. ``stage()``
keeps a transaction's deltas on ``session.info`` (nothing is written to
the database inside the host's transaction), ``committed()`` puts them
into a bounded in-memory queue and returns at once; a background thread
takes batches (at most ``batch_size`` transactions) from the queue,
assigns sequence numbers and publishes them.

Sequence numbers come from the stream's ``oslo_publish_streams`` row
under the same lock the relay uses (:class:`oslo_publish.relay.
StreamLock`): one short transaction per batch that locks the row,
publishes, and moves ``last_seq`` only for what the broker confirmed.
Several processes publishing the same stream therefore still produce one
gapless sequence, and a failed publish consumes no number. The
middleware's tables must exist (``oslo-publish-manage upgrade``).

Loss window (why this mode is "best effort"): a committed transaction's
deltas exist only in the process's memory until the broker confirmed
them. They are lost when the process dies (crash, SIGKILL, OOM) before
that, when the queue is full (``direct_queue_size``; the transaction is
dropped, counted in ``oslo_publish_direct_dropped`` and logged), and when
:meth:`DirectSink.stop` cannot flush the queue before its deadline
(counted likewise). While the broker is down, batches are retried with
capped, jittered backoff and the queue fills up. A consumer notices such
a loss as a sequence gap only if it happens after numbering, so lost
transactions are repaired by its periodic resync, not by the stream. Use
``delivery = outbox`` when every change must arrive.
"""

import queue
import threading
import time

from oslo_log import log

from oslo_publish import exceptions
from oslo_publish import metrics as metrics_mod
from oslo_publish import publisher
from oslo_publish import relay
from oslo_publish.relay import pacing
from oslo_publish import wire

LOG = log.getLogger(__name__)

_INFO_KEY = 'oslo_publish.direct'


class DirectSink(object):
    """Queue committed deltas in memory; publish them from a thread.

    :param conf: the ConfigOpts (group ``[oslo_publish]``).
    :param engine: Engine of the database holding the streams table.
    :param stream: the stream name.
    :param tables: ``{name: PublishedTable}`` (informational; the
        deltas carry their table headers).
    :param transport: an oslo.messaging notification transport.
    :param metrics: a :class:`~oslo_publish.metrics.HostMetrics`.
    """

    def __init__(self, conf, engine, stream, tables, transport,
                 metrics=None):
        self._opts = conf.oslo_publish
        self._stream = stream
        self.tables = tables
        self._metrics = metrics or metrics_mod.HostMetrics()
        self._publisher = publisher.Publisher(conf, transport, stream,
                                              self._metrics)
        self._key = self._opts.signing_key
        self._lock = relay.StreamLock(engine, stream)
        self._queue = queue.Queue(maxsize=self._opts.direct_queue_size)
        self._stopping = threading.Event()
        self._thread = None
        self._deadline = 0.0
        self._last_sent = time.monotonic()
        self._pacer = pacing.Pacer(self._opts.relay_cpu_share,
                                   self._opts.relay_max_pause)
        #: The writers' :class:`~oslo_publish.relay.pacing.Activity`
        #: (set by ``install()``), or None.
        self.activity = None

    @property
    def stream(self):
        return self._stream

    # --------------------------------------------------- sink interface

    def stage(self, session, txid, committed_at, changes, tables):
        """Keep a transaction's deltas until it committed (before_commit)."""
        session.info.setdefault(_INFO_KEY, []).append(
            (txid, committed_at, changes, tables))

    def committed(self, session):
        """Queue the committed transaction's deltas (after_commit)."""
        for item in session.info.pop(_INFO_KEY, None) or ():
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                self._drop(1, 'the queue is full (direct_queue_size=%d)'
                           % self._opts.direct_queue_size)

    def discarded(self, session):
        """Forget a rolled-back transaction's deltas."""
        session.info.pop(_INFO_KEY, None)

    def _drop(self, count, why):
        self._metrics.direct_dropped.labels(self._stream).inc(count)
        LOG.warning('Direct delivery of stream %(stream)s dropped '
                    '%(count)d transaction(s): %(why)s',
                    {'stream': self._stream, 'count': count, 'why': why})

    # ----------------------------------------------------------- thread

    def start(self):
        """Start the publishing thread (idempotent)."""
        if self._thread is not None:
            return
        self._stopping.clear()
        self._lock.keep = True
        self._thread = threading.Thread(
            target=self._run, daemon=True,
            name='oslo-publish-direct-%s' % self._stream)
        self._thread.start()

    def stop(self, timeout=10.0):
        """Flush the queue within ``timeout`` seconds, then stop.

        Transactions still queued after that are dropped and counted.
        """
        thread, self._thread = self._thread, None
        self._lock.keep = False
        if thread is None:
            self._lock.close()
            return
        self._deadline = time.monotonic() + timeout
        self._stopping.set()
        thread.join(timeout + 5.0)
        self._lock.close()
        left = self._queue.qsize()
        if left:
            self._drop(left, 'not published before stop')
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break

    def after_fork_in_child(self, conf):
        """In a forked child: publish from a thread and connection of its own.

        The parent's queue, thread and broker connection are not used;
        the new transport is made from ``conf``.

        :returns: a callable that stops the child's thread and closes its
            transport.
        """
        import oslo_messaging
        transport = oslo_messaging.get_notification_transport(conf)
        self._publisher = publisher.Publisher(conf, transport, self._stream,
                                              self._metrics)
        self._lock.forget()
        self._queue = queue.Queue(maxsize=self._opts.direct_queue_size)
        self._stopping = threading.Event()
        self._thread = None
        self.start()

        def stop():
            try:
                self.stop()
            finally:
                transport.cleanup()
        return stop

    def pending(self):
        """Transactions waiting in the queue."""
        return self._queue.qsize()

    def _take(self, wait):
        busy = not self._queue.empty()  # queued while the last batch ran
        try:
            batch = [self._queue.get(timeout=wait)]
        except queue.Empty:
            return []
        # No fixed window: an idle thread publishes at once; a busy one
        # (or one whose writers run) spaces its cycles by their cost
        # (relay_cpu_share) and takes what queued meanwhile.
        if not self._stopping.is_set():
            self._pacer.pause(busy, self.activity, self._stopping)
        while len(batch) < self._opts.batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self):
        failures = 0
        batch = []
        while True:
            stopping = self._stopping.is_set()
            if stopping and (time.monotonic() > self._deadline
                             or (not batch and self._queue.empty())):
                break
            if not batch:
                batch = self._take(0.05 if stopping else self._idle_wait())
                if not batch:
                    self._safe_heartbeat()
                    continue
            try:
                self._pacer.begin()
                size = len(batch)
                batch = self._publish(batch)
                self._pacer.end(size > 0)
                failures = 0
            except exceptions.DeliveryError:
                failures += 1
                self._metrics.broker_retries.labels(self._stream).inc()
            except Exception as exc:  # noqa: broad - keep the thread alive
                failures += 1
                LOG.warning('Direct delivery of stream %(stream)s failed, '
                            'retrying: %(exc)s',
                            {'stream': self._stream, 'exc': exc})
            if failures:
                delay = relay.backoff(failures, self._opts.retry_max_backoff)
                if stopping:
                    delay = min(delay, max(0.0, self._deadline
                                           - time.monotonic()))
                if stopping:
                    time.sleep(delay)
                else:
                    self._stopping.wait(delay)
        if batch:
            self._drop(len(batch), 'not published before stop')

    def _idle_wait(self):
        until_beat = (self._last_sent + self._opts.heartbeat_interval
                      - time.monotonic())
        return max(0.01, min(0.5, until_beat))

    def _safe_heartbeat(self):
        if time.monotonic() - self._last_sent < \
                self._opts.heartbeat_interval:
            return
        try:
            seq, epoch = self._lock.read_position()
            self._publisher.publish(
                wire.EVENT_HEARTBEAT,
                wire.heartbeat_message(self._stream, seq, self._key,
                                       epoch=epoch))
        except Exception as exc:  # noqa: broad - next beat retries
            LOG.debug('Heartbeat of stream %s failed: %s', self._stream, exc)
            self._last_sent = time.monotonic()
            return
        self._last_sent = time.monotonic()
        self._metrics.heartbeats.labels(self._stream).inc()

    def _publish(self, batch):
        """Number, publish and count ``batch``; return what is left.

        On failure the confirmed head of ``batch`` is removed in place
        and the error raised.
        """
        failure = None
        with self._lock.hold() as held:
            seq = held.last_seq
            entries = []
            for txid, committed_at, changes, tables in batch:
                seq += 1
                entries.append((len(entries), {
                    'seq': seq, 'txid': txid,
                    'committed_at': relay.as_utc(committed_at).isoformat(),
                    'changes': changes}, tables))
            confirmed, failure = relay.publish_entries(
                self._publisher, self._metrics, self._stream, self._key,
                self._opts.max_message_bytes, entries, epoch=held.epoch)
            done = len(confirmed)
            if done:
                held.last_seq += done
                self._lock.set_last_seq(held.conn, held.last_seq)
        if done:
            self._last_sent = time.monotonic()
            self._metrics.last_seq.labels(self._stream).set(held.last_seq)
        if failure is not None:
            del batch[:done]
            raise failure
        return []
