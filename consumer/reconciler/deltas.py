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

"""Taking delta and heartbeat messages: ordering, dedup, epochs.

The part of :class:`~consumer.reconciler.core.Reconciler` that takes
verified messages (:meth:`handle`, :meth:`handle_many`): duplicates and
replays are dropped, messages of another epoch or an unknown schema
are rejected or buffered for a resync, the rest enter the reorder buffer
(:mod:`.buffer`) and the contiguous run is applied (:mod:`.apply`).

Ownership: the after-images of a message's changes are handed over with
it. The cache keeps them as its rows (behind read-only proxies, without
a copy), so a caller passes freshly decoded changes (what
:class:`consumer.verify.Verifier` returns) and never mutates them
afterwards; a driver building changes from rows it keeps passes copies.
"""

import time

from oslo_log import log

from consumer import exceptions
from consumer.reconciler import buffer as buffer_mod
from consumer.reconciler import common
from consumer.reconciler import epochs as epochs_mod

LOG = log.getLogger(__name__)


class Deltas(object):
    """Message intake of the reconciler.

    Every method: caller holds ``_lock`` unless it says otherwise.

    Writes: ``_buffer``, ``_arrivals``, ``_gaps``,
    ``_last_heard_at``, ``_heard_seq``, ``_epoch_dirty``,
    ``counters``.
    """

    def handle(self, message, wait=None):
        """Take one verified message (any thread).

        With ``wait`` (seconds), a delta that is ahead of its turn waits
        that long for its predecessors before it is buffered, so that the
        listener acknowledges it only once it is durably applied (a
        concurrent executor reorders messages by a few places).

        :returns: ``'applied'``, ``'buffered'`` or ``'heartbeat'``.
        :raises consumer.exceptions.Rejected: ``replayed`` or
            ``unknown_table`` (already counted and logged).
        :raises StateUnavailable: the state store failed; redeliver.
        """
        now = self._clock()
        with self._lock:
            self._gaps.last_seen = now
            self._last_heard_at = time.time()
            outcome = self._admit(message, now, batch=False)
            if outcome is not None:
                return outcome
            if wait and message.first_seq > self._applied + 1:
                self._turns.wait(
                    message.first_seq,
                    lambda: self._buffering or self._stopping.is_set() or
                    message.first_seq <= self._applied + 1, wait)
                if self._buffering:
                    self._buffer_message(message)
                    return 'buffered'
                self._check_not_replayed(message)
            if message.first_seq - self._applied > self._window:
                self._beyond_window(message, now)
                self._buffer_message(message)
                return 'buffered'
            self._buffer_message(message)
            self._drain(now)
            return 'applied' if self._applied >= message.last_seq \
                else 'buffered'

    def handle_many(self, messages):
        """Take verified messages in arrival order, in one turn (any thread).

        What :meth:`handle` does for each message (without waiting for
        turns: a message ahead of its turn is buffered, and the
        listener's :meth:`settle` holds its acknowledgement until it is
        durable), under one acquisition of the stream's lock, with one
        drain at the end: the contiguous run of the whole batch reaches
        the cache, the handlers and the persister at once.

        :returns: a list with, per message, ``'applied'``,
            ``'buffered'``, ``'heartbeat'`` or the exception
            :meth:`handle` would have raised (``Rejected``, or
            ``StateUnavailable`` for every delta of the batch when the
            final drain failed).
        """
        now = self._clock()
        results = []
        with self._lock:
            self._gaps.last_seen = now
            self._last_heard_at = time.time()
            for message in messages:
                try:
                    results.append(self._take(message, now))
                except exceptions.Rejected as exc:
                    results.append(exc)
            try:
                if not self._buffering and self._applied is not None:
                    self._drain(now)
            except common.StateUnavailable as exc:
                return [exc if result == 'buffered' else result
                        for result in results]
            applied = self._applied
        return [result if result != 'buffered' or applied is None or
                applied < message.last_seq else 'applied'
                for message, result in zip(messages, results)]

    def _hear(self, message):
        """Note a received message's reach; caller holds _lock."""
        if message.is_heartbeat or self._heard_seq is None:
            self._heard_seq = message.last_seq
        elif message.last_seq is not None:
            self._heard_seq = max(self._heard_seq, message.last_seq)
        self.counters['received'] += 1

    def _schema_changed(self, message, now):
        """Check a delta's tables against the known ones; caller: _lock.

        Raises ``Rejected`` (``unknown_table``) for a table the snapshot
        did not have; True when a table's version changed: a schema
        resync is requested and the message is buffered.
        """
        for table, info in message.tables.items():
            known = self._known.get(table)
            if known is None:
                self._request('schema', now)
                raise self._reject('unknown_table',
                                   'table not in the snapshot')
            if not self._version_ok(table, info['version'],
                                    message.last_seq):
                LOG.info('Schema of %s.%s changed; resynchronising',
                         self.stream, table)
                self._request('schema', now)
                self._buffer_message(message)
                return True
        return False

    def _admit(self, message, now, batch):
        """The checks every message passes first; caller holds _lock.

        Returns ``'heartbeat'`` or ``'buffered'`` when the message needs
        nothing more, None when its transactions are to be ordered and
        applied. ``batch``: within :meth:`handle_many`, where a heartbeat
        compares with what the batch applied so far (drained first).

        :raises consumer.exceptions.Rejected: ``replayed`` (counted).
        """
        self._hear(message)
        self._check_epoch(message, now)
        if message.is_heartbeat:
            if batch:
                self._drain_if_due(now)
            self._on_heartbeat(message.last_seq, now)
            return 'heartbeat'
        if self._buffering:
            self._buffer_message(message)
            return 'buffered'
        self._check_not_replayed(message)
        if self._schema_changed(message, now):
            return 'buffered'
        return None

    def _take(self, message, now):
        """One message of :meth:`handle_many`; caller holds _lock."""
        outcome = self._admit(message, now, batch=True)
        if outcome is not None:
            return outcome
        if len(self._buffer) + len(message.transactions) > self._window:
            # The reorder buffer holds at most a window: apply what the
            # batch made contiguous so far.
            self._drain_if_due(now)
        if message.first_seq - self._applied > self._window and \
                message.first_seq - self._contiguous() > self._window:
            self._beyond_window(message, now)
        self._buffer_message(message)
        return 'buffered'

    def _beyond_window(self, message, now):
        """``message`` starts past the reorder window: a gap (_lock)."""
        LOG.warning('Stream %s: seq %d is beyond the reorder window '
                    '(applied %d)', self.stream, message.first_seq,
                    self._applied)
        self._request('gap', now)

    def _contiguous(self):
        """Highest seq applied or buffered without a hole (_lock)."""
        seq = self._applied
        while seq + 1 in self._buffer:
            seq += 1
        return seq

    def _drain_if_due(self, now):
        if not self._buffering and self._applied is not None and \
                self._applied + 1 in self._buffer:
            self._drain(now)

    def _reject(self, reason, detail):
        self._metrics.rejected.labels(stream=self.stream,
                                      reason=reason).inc()
        self.counters['rejected_' + reason] += 1
        log_fn = LOG.debug if reason == 'replayed' else LOG.warning
        log_fn('Rejected message of stream %s: %s (%s)', self.stream,
               reason, detail)
        return exceptions.Rejected(reason, detail)

    def _check_not_replayed(self, message):
        """Reject a message wholly at or below the applied position."""
        if message.last_seq <= self._applied:
            self._count_duplicates(len(message.transactions))
            raise self._reject('replayed', 'seq %d <= applied %d'
                               % (message.last_seq, self._applied))

    def _count_duplicates(self, count):
        if count:
            self._metrics.duplicates_dropped.labels(
                stream=self.stream).inc(count)
            self.counters['duplicates'] += count

    def _buffer_message(self, message):
        limit = common.SNAPSHOT_BUFFER if self._buffering else self._window
        floor = self._applied if self._applied is not None else -1
        if self._epochs.coming is not None:
            floor = -1  # numbered in a new epoch: the snapshot decides
        self._arrivals += 1
        for tx in message.transactions:
            if tx.seq <= floor:
                self._count_duplicates(1)
                continue
            if tx.seq in self._buffer:
                self._count_duplicates(1)
                continue
            if len(self._buffer) >= limit:
                # Lost here means missing later: a gap, then a resync.
                self.counters['buffer_overflow'] += 1
                continue
            self._buffer[tx.seq] = buffer_mod.Pending(
                tx.seq, tx.committed_at, tx.changes, message.tables,
                self._arrivals, message.epoch)
        if self._buffering:
            self._arrived.notify_all()

    def _check_epoch(self, message, now):
        """Resync when ``message`` was numbered in another epoch (_lock).

        A 1.0 message (no epoch) counts in the current epoch. The first
        epoch seen is adopted (before the initial snapshot: as the epoch
        that snapshot will count in). Once a change is seen, messages of
        the old epoch are rejected (``stale_epoch``) and those of the new
        one buffered for after the resync.
        """
        verdict = self._epochs.classify(message.epoch,
                                        self._applied is not None)
        if verdict == epochs_mod.ADOPT:
            self._epoch_dirty = self._epochs.current is not None
            return
        if verdict == epochs_mod.STALE:
            raise self._reject('stale_epoch', 'epoch %s after the stream '
                               'changed to %s' % (message.epoch,
                                                  self._epochs.coming or
                                                  self._epochs.current))
        if verdict != epochs_mod.CHANGED:
            return
        LOG.warning('Stream %s: epoch changed to %s (host database '
                    'restored or rebuilt); resynchronising', self.stream,
                    message.epoch)
        self._buffer.clear()  # numbered in the old epoch
        if self._applied is not None:
            self._gaps.reset()
            self._request('epoch', now)

    def _write_epoch(self):
        """Persist an epoch adopted from a message (without _lock)."""
        with self._lock:
            if not self._epoch_dirty:
                return
            epoch = self._epochs.current
            self._epoch_dirty = False
        try:
            self._state.set_epoch(self.stream, self.collector, self.fetcher,
                                  epoch)
        except Exception as exc:  # noqa: retried by the next poll
            with self._lock:
                self._epoch_dirty = True
            self._persist_failed(exc)
