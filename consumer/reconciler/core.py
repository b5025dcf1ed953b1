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

"""Per-stream reconciliation: order, dedup, gaps, snapshots, resyncs.

One :class:`Reconciler` per stream. It receives verified messages
(:class:`consumer.verify.Message`) from any number of threads and applies
their transactions strictly by sequence number::

    initial --> snapshotting --> live --> resyncing --> live ...

* Transactions with ``seq <= applied`` are dropped (counted as
  duplicates; a message made only of them is rejected as ``replayed``).
* Transactions ahead of ``applied + 1`` wait in a reorder buffer of at
  most ``[consumer] reorder_window`` sequence numbers.
* A gap resynchronises the stream's tables: a missing seq that does not
  arrive within ``gap_timeout``, a heartbeat ahead of the applied
  position for as long, a message beyond the reorder window, or no
  message at all for ``inactivity_timeout``.
* A resync opens a snapshot (watermark N), reads every table into a new
  table state built aside, swaps it in (state store first, then cache),
  and applies the deltas buffered meanwhile with ``seq > N``. Resyncs back
  off with jitter and are rate limited per stream.
* Every ``resync_interval`` (jittered) a periodic resync compares the
  snapshot with the cache row by row hash and counts differences as
  drift.

Per applied batch: ``cache.apply`` -> ``dispatcher.dispatch(events)`` ->
``persister.submit`` (:mod:`consumer.persister`: rows and position of
everything applied since its last write, in one state-store
transaction). Readers therefore see a transaction before it is durable;
the listener acknowledges a message only once :meth:`Reconciler.settle`
says its effect is persisted (or that it was deliberately discarded),
so a crash in between costs a redelivery, never a loss. A snapshot is
installed only after everything applied before it is persisted.

Locking: ``_lock`` (one per stream) guards every attribute documented as
such; snapshots are read without it so messages keep being buffered.
"""

import collections
import datetime
import random
import threading
import time

from oslo_log import log

from consumer import exceptions
from consumer import gc_pause
from consumer import migrations
from consumer import persister as persister_mod
from consumer.reconciler import buffer as buffer_mod
from consumer.reconciler import catchup
from consumer.reconciler import drift as drift_mod
from consumer.reconciler import epochs as epochs_mod
from consumer.reconciler import install as install_mod
from consumer.reconciler import timers
from consumer.reconciler import turns as turns_mod
from oslo_publish import wire

LOG = log.getLogger(__name__)

INITIAL = 'initial'
SNAPSHOTTING = 'snapshotting'
LIVE = 'live'
RESYNCING = 'resyncing'
STOPPED = 'stopped'

CAUSES = ('initial', 'gap', 'heartbeat', 'inactivity', 'periodic',
          'schema', 'manual', 'epoch', 'invalidate')

#: Largest number of transactions buffered while a snapshot is read.
SNAPSHOT_BUFFER = 100000
#: Largest number of transactions committed in one state transaction.
BATCH_LIMIT = 500
#: Longest sleep of the worker between two timer checks.
MAX_TICK = 0.5
#: Longest wait for the persister before a snapshot is installed.
FLUSH_TIMEOUT = 10.0


class StateUnavailable(exceptions.ConsumerError):
    """The state store failed; the message should be redelivered."""


def _is_db_error(exc):
    module = type(exc).__module__ or ''
    return module.startswith(('sqlalchemy', 'oslo_db', 'pymysql',
                              'psycopg2', 'sqlite3'))


class Reconciler(object):
    """Reconciles one stream into the cache and the state store.

    :param conf: ConfigOpts with the consumer options.
    :param stream: stream name.
    :param source: a :class:`consumer.source.SnapshotSource`.
    :param cache: a :class:`consumer.cache.Cache`.
    :param state: a :class:`consumer.state.StateStore`.
    :param dispatcher: a :class:`consumer.handlers.Dispatcher`.
    :param metrics: a :class:`consumer.metrics.ConsumerMetrics`.
    :param collector: driver name (state key ``collector``).
    :param fetcher: source kind (state key ``fetcher``).
    :param tables: tables to mirror (None: all the source publishes).
    :param clock: monotonic clock, for tests.
    :param rng: ``random.Random`` for jitter, for tests.
    :param migration_steps: :class:`consumer.migrations.MigrationStep`
        list (None: :func:`consumer.migrations.steps`).
    """

    def __init__(self, conf, stream, source, cache, state, dispatcher,
                 metrics, collector='oslo_publish', fetcher='snapshot',
                 tables=None, clock=time.monotonic, rng=None,
                 migration_steps=None):
        opts = conf.consumer
        self.stream = stream
        self.collector = collector
        self.fetcher = fetcher
        self._source = source
        self._cache = cache
        self._state = state
        self._dispatcher = dispatcher
        self._metrics = metrics
        self._tables_filter = list(tables) if tables else None
        self._clock = clock
        self._rng = rng or random.Random()
        self._steps = None if migration_steps is None else \
            list(migration_steps)
        self._extra_steps = []
        self._persist_rows = opts.persist_rows
        self._gc_freeze_synced = opts.gc_freeze_after_sync
        self._gc_freeze = opts.gc_freeze_after_resume or \
            self._gc_freeze_synced
        #: Frozen once already (gc_freeze_after_sync: the first sync).
        self._gc_frozen = False
        self._window = opts.reorder_window
        self._gap_timeout = opts.gap_timeout
        self._inactivity = opts.inactivity_timeout
        #: Keeps a resume's loaded rows out of collections until caught up.
        self._catch_up = catchup.CatchUpHold(self._inactivity)
        self._interval = opts.resync_interval
        #: Backoff and rate limit of resyncs (guarded by _lock).
        self._pacer = timers.Pacer(opts.resync_backoff_min,
                                   opts.resync_backoff_max,
                                   opts.resyncs_per_minute, self._rng)

        #: Guards every attribute below.
        self._lock = threading.RLock()
        #: Deltas of handle(wait=...) waiting for their turn: woken
        #: (under _lock) when _applied reaches them, or all at once when
        #: the stream starts buffering or stops.
        self._turns = turns_mod.Turns(self._lock)
        #: State machine position (INITIAL .. RESYNCING).
        self._status = INITIAL
        #: Last applied seq of the stream; None before the first snapshot.
        self._applied = None
        #: table -> seq its stored position is at, when above _applied
        #: (after a crash between two tables of a resync). Changes of
        #: such a table with seq <= that position are skipped.
        self._table_seq = {}
        #: table -> {"pk", "version"} of the mirrored tables.
        self._known = {}
        #: table -> (old version, watermark) of the last migration: deltas
        #: up to the watermark may still carry the old version.
        self._retired = {}
        #: seq -> buffer.Pending: reorder buffer and snapshot buffer.
        self._buffer = {}
        #: Counter of buffered messages, stamped on each Pending.
        self._arrivals = 0
        #: True while deltas must be buffered, not applied (a resync is
        #: pending or a snapshot is being read).
        self._buffering = True
        #: Monotonic time the first missing seq started to be missed.
        self._gap_since = None
        #: (seq, since) of a heartbeat ahead of _applied.
        self._hb_ahead = None
        #: Monotonic time of the last message received.
        self._last_seen = None
        #: Wall-clock time (epoch seconds) of the last delta or heartbeat
        #: heard from the host, and the highest seq it announced; written
        #: to the status record so consumer-status can tell a consumer
        #: that hears nothing (wrong topic, exchange, stream) or lags.
        self._last_heard_at = None
        self._heard_seq = None
        #: Cause of the pending resync (None: none pending).
        self._pending = None
        #: Monotonic time the pending resync may start.
        self._resync_at = 0.0
        #: Monotonic time the next periodic resync is due (None: never).
        self._periodic_at = None
        #: Epoch of the applied position and the one coming.
        self._epochs = epochs_mod.EpochTracker()
        #: True when an epoch was adopted from a message and must be
        #: written to the state store (poll() does it, outside _lock).
        self._epoch_dirty = False
        #: (seq, since) of a same-epoch heartbeat behind _applied: the
        #: host database was rewound (restored from a dump).
        self._hb_behind = None
        #: table -> (seq, cause) of a pending targeted resync (a table
        #: invalidation applied at seq).
        self._invalidated = {}
        #: Commit-to-apply delay of the last applied transaction.
        self._lag = None
        #: Last error text (for consumer-status).
        self.last_error = None
        #: Counts for consumer-status.
        self.counters = collections.Counter()
        self._synced = threading.Event()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = None
        #: Writes applied runs to the state store (own lock, never takes
        #: _lock: it may be flushed with _lock held).
        self._persister = persister_mod.Persister(
            state, stream, collector, fetcher, on_error=self._persist_failed)

    # ------------------------------------------------------------ public

    @property
    def status(self):
        """State machine position: initial, snapshotting, live, ..."""
        return self._status

    @property
    def applied(self):
        """Last applied sequence number (None before the first sync)."""
        return self._applied

    @property
    def synced(self):
        """True when a snapshot is applied and the stream is live."""
        return self._synced.is_set()

    def wait_synced(self, timeout=None):
        """Block until synced; return True, or False after ``timeout``."""
        return self._synced.wait(timeout)

    def start(self, run_thread=True):
        """Resume from the state store (or plan the initial snapshot).

        With ``run_thread`` a worker thread runs timers and resyncs;
        without it, call :meth:`poll` yourself (tests).
        """
        self._persister = persister_mod.Persister(
            self._state, self.stream, self.collector, self.fetcher,
            threaded=run_thread, on_error=self._persist_failed)
        self._persister.start()
        self._resume()
        if run_thread:
            self._thread = threading.Thread(
                target=self._run, name='reconciler-%s' % self.stream,
                daemon=True)
            self._thread.start()

    def stop(self, timeout=10.0):
        """Stop the worker; applied positions are already durable."""
        self._stopping.set()
        self._wake.set()
        with self._lock:
            self._turns.wake_all()
            # Reported stopped at once, even while a resync in progress
            # delays the join (consumer-sync bounds its stop).
            self._status = STOPPED
            self._synced.clear()
            self._catch_up.release()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        try:
            self._persister.stop(timeout)
        except Exception as exc:  # noqa: unacknowledged, redelivered
            LOG.warning('Stream %s: state store failed at stop (%s); the '
                        'unpersisted messages will be redelivered',
                        self.stream, type(exc).__name__)
        with self._lock:
            self._status = STOPPED
            self._synced.clear()

    @property
    def durable(self):
        """Highest seq whose effect is in the state store."""
        return self._persister.durable

    def settle(self, message, timeout):
        """Wait until ``message`` may be acknowledged to the broker.

        True once its effect is persisted (``seq <= durable``) or it was
        deliberately discarded (neither applied nor buffered: a
        duplicate dropped from an overflowing buffer or forged); False
        after ``timeout`` seconds or when stopping (requeue it).
        """
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if self._persister.wait_durable(message.last_seq,
                                            max(0.0, min(left, 0.25))):
                return True
            with self._lock:
                if self._discarded(message):
                    return True
            if left <= 0 or self._stopping.is_set():
                return False

    def _discarded(self, message):
        """Neither applied nor waiting in the buffer; caller: _lock."""
        if self._applied is not None and \
                self._applied >= message.first_seq:
            return False
        return not any(tx.seq in self._buffer
                       for tx in message.transactions)

    def _persist_failed(self, exc):
        """The persister's write failed (called without _lock)."""
        self.last_error = 'state store: %s' % type(exc).__name__
        self.counters['state_errors'] += 1
        LOG.warning('Stream %s: state store write failed (%s); retrying',
                    self.stream, type(exc).__name__)

    def _flush_state(self):
        """Persist what the cache shows before writing a snapshot."""
        try:
            done = self._persister.flush(FLUSH_TIMEOUT)
        except Exception as exc:
            raise StateUnavailable(str(exc)[:200]) from exc
        if not done:
            raise StateUnavailable('state store writes are %d runs behind'
                                   % self._persister.backlog())

    def add_migration_step(self, step):
        """Run ``step`` (a MigrationStep) after the registered ones."""
        self._extra_steps.append(step)

    def resync(self, cause='manual'):
        """Request a resync of the stream's tables."""
        with self._lock:
            self._request(cause, self._clock())

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
            self._last_seen = now
            self._last_heard_at = time.time()
            self._hear(message)
            self._check_epoch(message, now)
            if message.is_heartbeat:
                self._on_heartbeat(message.last_seq, now)
                return 'heartbeat'
            if self._buffering:
                self._buffer_message(message)
                return 'buffered'
            self._check_not_replayed(message)
            if self._schema_changed(message, now):
                return 'buffered'
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
                LOG.warning('Stream %s: seq %d is beyond the reorder window '
                            '(applied %d)', self.stream, message.first_seq,
                            self._applied)
                self._request('gap', now)
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
            self._last_seen = now
            self._last_heard_at = time.time()
            for message in messages:
                try:
                    results.append(self._take(message, now))
                except exceptions.Rejected as exc:
                    results.append(exc)
            try:
                if not self._buffering and self._applied is not None:
                    self._drain(now)
            except StateUnavailable as exc:
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

    def _take(self, message, now):
        """One message of :meth:`handle_many`; caller holds _lock."""
        self._hear(message)
        self._check_epoch(message, now)
        if message.is_heartbeat:
            # Heartbeats compare with what the batch applied so far.
            self._drain_if_due(now)
            self._on_heartbeat(message.last_seq, now)
            return 'heartbeat'
        if self._buffering:
            self._buffer_message(message)
            return 'buffered'
        self._check_not_replayed(message)
        if self._schema_changed(message, now):
            return 'buffered'
        if len(self._buffer) + len(message.transactions) > self._window:
            # The reorder buffer holds at most a window: apply what the
            # batch made contiguous so far.
            self._drain_if_due(now)
        if message.first_seq - self._applied > self._window and \
                message.first_seq - self._contiguous() > self._window:
            LOG.warning('Stream %s: seq %d is beyond the reorder window '
                        '(applied %d)', self.stream, message.first_seq,
                        self._applied)
            self._request('gap', now)
        self._buffer_message(message)
        return 'buffered'

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

    def poll(self):
        """Run due timers and a due resync once; return seconds to wait."""
        now = self._clock()
        if self._persister.backlog() and self._thread is None:
            try:
                self._persister.flush()
            except Exception:  # noqa: counted by _persist_failed
                pass
        with self._lock:
            if not self._buffering and self._applied is not None and \
                    self._applied + 1 in self._buffer:
                try:
                    self._drain(now)
                except StateUnavailable:
                    pass
            self._check_timers(now)
            cause = None
            if self._pending is not None and now >= self._resync_at:
                cause = self._pending
        if cause is not None:
            self._resync(cause)
            now = self._clock()
        self._write_epoch()
        with self._lock:
            tables = None
            if self._pending is None and self._invalidated and \
                    self._status == LIVE and now >= self._resync_at:
                tables = dict(self._invalidated)
                self._invalidated.clear()
                self._buffering = True
                self._turns.wake_all()
        if tables:
            self._resync_tables(tables)
            now = self._clock()
        with self._lock:
            wait = MAX_TICK
            if self._invalidated:
                wait = min(wait, max(self._resync_at - now, 0.01))
            if self._pending is not None:
                wait = min(wait, max(self._resync_at - now, 0.01))
            if self._gap_since is not None or self._hb_ahead is not None \
                    or self._hb_behind is not None:
                wait = min(wait, self._gap_timeout / 2.0)
            return max(wait, 0.005)

    def status_info(self):
        """A dict for consumer-status and the status table."""
        with self._lock:
            info = {'stream': self.stream, 'state': self._status,
                    'applied_seq': self._applied,
                    'durable_seq': self._persister.durable,
                    'unpersisted_runs': self._persister.backlog(),
                    'synced': self.synced,
                    'buffered': len(self._buffer), 'lag_seconds': self._lag,
                    'pending_resync': self._pending,
                    'epoch': self._epochs.current,
                    'pending_invalidations': sorted(self._invalidated),
                    'last_heard_at': self._last_heard_at,
                    'heard_seq': self._heard_seq,
                    'last_error': self.last_error}
            info.update(self.counters)
            return info

    # ----------------------------------------------------------- resume

    def _resume(self):
        now = self._clock()
        positions = {}
        try:
            positions = self._state.load(self.stream, self.collector,
                                         self.fetcher,
                                         tables=self._tables_filter)
        except Exception as exc:  # noqa: a broken store means resync
            if not _is_db_error(exc):
                raise
            LOG.warning('Stream %s: cannot read the state store (%s); '
                        'starting with a snapshot', self.stream,
                        type(exc).__name__)
        seqs = [scope.seq for scope in positions.values()
                if scope.seq is not None]
        with self._lock:
            self._last_seen = now
            self._schedule_periodic(now)
            if not positions or len(seqs) != len(positions) or \
                    not self._persist_rows:
                self._request('initial', now, first=True)
                return
            events = []
            # The loaded rows all stay alive: no collection while they
            # are read (see consumer.gc_pause), frozen below.
            with gc_pause.paused():
                for table, scope in positions.items():
                    rows = self._state.load_table(self.stream, table)
                    events.extend(self._cache.replace_table(
                        table, rows, owned=True))
                    self._known[table] = {'pk': None,
                                          'version': scope.schema_version}
                del rows
                # Still paused: kept out of collections (or at least
                # out of the young ones) while catching up.
                if self._gc_freeze or not self._catch_up.hold(now):
                    gc_pause.promote_young()
            self._applied = min(seqs)
            self._catch_up.resumed_at(self._applied)
            epochs = set(scope.epoch for scope in positions.values())
            self._epochs = epochs_mod.EpochTracker(
                epochs.pop() if len(epochs) == 1 else None)
            self._persister.mark_durable(self._applied)
            self._table_seq = {table: scope.seq
                               for table, scope in positions.items()
                               if scope.seq > self._applied}
            self._set_live()
            self._metrics.applied_seq.labels(stream=self.stream).set(
                self._applied)
            self._dispatch(events)
            del events
            frozen = 0
            if self._gc_freeze:
                self._gc_frozen = True
                frozen = gc_pause.freeze_survivors()
            LOG.info('Stream %s resumed at seq %d from the state store '
                     '(%d tables, %d objects frozen)', self.stream,
                     self._applied, len(positions), frozen)
            try:
                self._drain(now)
            except StateUnavailable:
                pass  # stays buffered; poll() retries

    # ------------------------------------------------------- message flow

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
        limit = SNAPSHOT_BUFFER if self._buffering else self._window
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
            self._gap_since = None
            self._hb_ahead = None
            self._hb_behind = None
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

    def _invalidate(self, table, cause, seq):
        """Plan a targeted resync of ``table`` (caller: _lock)."""
        LOG.info('Stream %s: table %s invalidated at seq %d (%s); '
                 're-reading it', self.stream, table, seq, cause)
        self._metrics.invalidations.labels(
            stream=self.stream, table=table, cause=cause).inc()
        self.counters['invalidated'] += 1
        self.counters['invalidated:%s:%s' % (table, cause)] += 1
        old = self._invalidated.get(table)
        if old is None or old[0] < seq:
            self._invalidated[table] = (seq, cause)
        self._wake.set()

    def _on_heartbeat(self, seq, now):
        if self._buffering or self._applied is None:
            return
        self._catch_up.heartbeat(seq, self._applied)
        if seq > self._applied:
            if self._hb_ahead is None or self._hb_ahead[0] < seq:
                since = self._hb_ahead[1] if self._hb_ahead else now
                self._hb_ahead = (seq, since)
            self._hb_behind = None
        elif seq < self._applied:
            # Rewound host, or a heartbeat overtaken by later deltas: the
            # latter is cleared by the next delta applied or heartbeat.
            self._hb_ahead = None
            if self._hb_behind is None:
                self._hb_behind = (seq, now)
        else:
            self._hb_ahead = None
            self._hb_behind = None

    def _drain(self, now):
        """Apply the contiguous run after _applied; caller holds _lock."""
        progressed = False
        while True:
            self._count_duplicates(buffer_mod.drop_applied(self._buffer,
                                                           self._applied))
            run = buffer_mod.take_run(self._buffer, self._applied,
                                      BATCH_LIMIT)
            if not run:
                break
            if not self._schema_matches(run, now):
                for item in run:
                    self._buffer[item.seq] = item
                break
            self._apply(run)
            progressed = True
        if self._buffer:
            # A gap's clock starts when its first missing seq is awaited.
            if self._gap_since is None or progressed:
                self._gap_since = now
        else:
            self._gap_since = None
        if self._hb_ahead is not None and \
                self._hb_ahead[0] <= self._applied:
            self._hb_ahead = None

    def _schema_matches(self, run, now):
        for item in run:
            for table, info in item.tables.items():
                if not self._version_ok(table, info['version'], item.seq):
                    self._request('schema', now)
                    return False
        return True

    def _version_ok(self, table, version, seq):
        """True when a delta of ``table`` at ``seq`` needs no migration."""
        known = self._known.get(table)
        if known is not None and known['version'] == version:
            return True
        if self._table_seq.get(table, -1) >= seq:
            return True  # its changes are in the table's snapshot
        retired = self._retired.get(table)
        return known is not None and retired is not None and \
            retired[0] == version and seq <= retired[1]

    def _apply(self, run):
        changes = []
        for item in run:
            for change in item.changes:
                if self._table_seq.get(change.table, -1) >= item.seq:
                    continue
                if change.op == wire.INVALIDATE:
                    self._invalidate(change.table, change.cause, item.seq)
                    continue
                changes.append(change)
        last = run[-1]
        self._hb_behind = None
        versions = {table: info['version']
                    for table, info in self._known.items()}
        events = self._cache.apply(changes)
        self._applied = last.seq
        self._turns.advance(self._applied)
        if self._table_seq and self._applied >= max(
                self._table_seq.values()):
            self._table_seq = {}
        self._metrics.deltas_applied.labels(stream=self.stream).inc(
            len(changes))
        self._metrics.applied_seq.labels(stream=self.stream).set(last.seq)
        self.counters['applied'] += len(run)
        if last.committed_at is not None and \
                last.committed_at.tzinfo is not None:
            lag = datetime.datetime.now(datetime.timezone.utc) - \
                last.committed_at
            self._lag = max(lag.total_seconds(), 0.0)
            self._metrics.lag.labels(stream=self.stream).set(self._lag)
        self._dispatch(events)
        try:
            self._persister.submit(last.seq, last.committed_at, changes,
                                   versions)
        except Exception as exc:
            # Unthreaded only: the run stays queued, poll() retries.
            raise StateUnavailable(str(exc)[:200]) from exc

    def _dispatch(self, events):
        if events:
            try:
                self._dispatcher.dispatch(events)
            except Exception:  # noqa: handlers never stop the stream
                LOG.exception('Stream %s: dispatching events failed',
                              self.stream)

    # ------------------------------------------------------------ timers

    def _schedule_periodic(self, now):
        if self._interval > 0:
            self._periodic_at = now + self._interval * self._rng.uniform(
                0.9, 1.1)

    def _check_timers(self, now):
        self._catch_up.check(now)
        if self._status in (INITIAL, STOPPED) or self._applied is None:
            return
        if not self._buffering:
            if self._gap_since is not None and \
                    now - self._gap_since >= self._gap_timeout:
                missing = self._applied + 1
                LOG.warning('Stream %s: seq %d missing for %.2fs',
                            self.stream, missing, now - self._gap_since)
                self._request('gap', now)
            elif self._hb_ahead is not None and \
                    now - self._hb_ahead[1] >= self._gap_timeout:
                LOG.warning('Stream %s: heartbeat at seq %d ahead of '
                            'applied %d', self.stream, self._hb_ahead[0],
                            self._applied)
                self._request('heartbeat', now)
            elif self._hb_behind is not None and \
                    now - self._hb_behind[1] >= self._gap_timeout:
                LOG.warning('Stream %s: heartbeat at seq %d behind applied '
                            '%d: the host database was rewound',
                            self.stream, self._hb_behind[0], self._applied)
                self._hb_behind = None
                self._request('epoch', now)
            elif self._last_seen is not None and \
                    now - self._last_seen >= self._inactivity:
                LOG.warning('Stream %s: silent for %.1fs', self.stream,
                            now - self._last_seen)
                self._request('inactivity', now)
        if self._pending is None and self._periodic_at is not None and \
                now >= self._periodic_at:
            self._request('periodic', now)

    def _request(self, cause, now, first=False):
        """Plan a resync; caller holds _lock."""
        if self._pending is not None and not (
                cause == 'epoch' and self._pending != 'epoch'):
            return
        self._pending = cause
        self._resync_at = self._pacer.next_at(now)
        if cause != 'periodic':
            self._buffering = True
            self._turns.wake_all()
            self._synced.clear()
            self._metrics.synced.labels(stream=self.stream).set(0)
            if not first and self._status == LIVE:
                self._status = RESYNCING
        LOG.info('Stream %s: resync (%s) planned in %.2fs', self.stream,
                 cause, self._resync_at - now)
        self._wake.set()

    # ----------------------------------------------------------- resyncs

    def _resync(self, cause):
        now = self._clock()
        with self._lock:
            if self._pending is None:
                return
            self._pending = None
            self._pacer.started(now)
            self._buffering = True
            self._turns.wake_all()
            if self._status == INITIAL:
                self._status = SNAPSHOTTING
            elif cause != 'periodic':
                self._status = RESYNCING
        self._metrics.resyncs.labels(stream=self.stream, cause=cause).inc()
        self.counters['resync_' + cause] += 1
        LOG.info('Stream %s: resync started (%s)', self.stream, cause)
        started = time.monotonic()
        if cause == 'schema' and self._applied is not None:
            try:
                if self._migrate():
                    return
            except Exception as exc:  # noqa: every failure is retried
                self._resync_failed(cause, exc)
                return
        with self._lock:
            requested = self._arrivals
        stage = None
        try:
            with self._source.open(self._tables_filter) as snap:
                watermark = snap.watermark
                epoch = getattr(snap, 'epoch', None)
                owned = getattr(snap, 'owned_rows', False)
                tables = dict(snap.tables)
                stage = self._stage_tables()
                contents = {name: install_mod.read_table(snap, name, stage)
                            for name in tables}
            if stage is not None and stage.aborted:
                stage = None  # a repeated key: whole tables at install
            read = time.monotonic()
            drift = None
            if cause == 'periodic' and self._applied is not None:
                with self._lock:
                    view, in_flight = self._drift_inputs(watermark)
                drift = drift_mod.count_drift(view, in_flight, tables,
                                              contents)
            with self._lock:
                self._drop_impossible(watermark, requested)
                self._install(watermark, tables, contents, cause, drift,
                              epoch, stage, owned)
        except Exception as exc:  # noqa: every failure is retried
            if stage is not None:
                stage.abort()  # the previous rows and positions stay
            self._resync_failed(cause, exc)
            return
        done = time.monotonic()
        LOG.info('Stream %s: resync (%s) done at watermark %d: %d rows, '
                 'read in %.2fs, installed in %.2fs', self.stream, cause,
                 watermark, sum(len(rows) for rows in contents.values()),
                 read - started, done - read)

    def _resync_tables(self, invalidated):
        """Re-read the invalidated tables from one snapshot.

        ``invalidated``: ``{table: (seq, cause)}``. The stream buffers
        while the tables are read (so the watermark, at or after the
        host's latest seq, is >= every applied seq); their rows then
        replace the cache's and the store's, and their deltas up to the
        watermark are skipped (they are in the snapshot). Other tables are
        untouched.
        """
        self._metrics.resyncs.labels(stream=self.stream,
                                     cause='invalidate').inc()
        self.counters['resync_invalidate'] += 1
        names = sorted(invalidated)
        try:
            with self._source.open(names) as snap:
                watermark = snap.watermark
                tables = {t: info for t, info in snap.tables.items()
                          if t in invalidated}
                contents = {t: dict(snap.rows(t)) for t in tables}
            with self._lock:
                if self._pending is not None:
                    # A full resync is due: it re-reads these tables too.
                    return
                if watermark < max(s for s, _c in invalidated.values()):
                    raise exceptions.SnapshotFailed(
                        'watermark %d before the invalidation' % watermark)
                self._install_tables(watermark, tables, contents)
        except Exception as exc:  # noqa: every failure is retried
            with self._lock:
                for table, item in invalidated.items():
                    old = self._invalidated.get(table)
                    if old is None or old[0] < item[0]:
                        self._invalidated[table] = item
                self._pacer.failures += 1
                self.last_error = '%s: %s' % (type(exc).__name__,
                                              str(exc)[:200])
                self.counters['resync_failures'] += 1
                self._resync_at = self._clock() + self._pacer.backoff()
                LOG.warning('Stream %s: re-reading %s failed (%s); '
                            'retrying', self.stream, ', '.join(names),
                            self.last_error)
                if self._pending is None:
                    self._buffering = False
                    self._turns.wake_all()
                    try:
                        self._drain(self._clock())
                    except StateUnavailable:
                        pass
            return
        LOG.info('Stream %s: re-read %s at watermark %d', self.stream,
                 ', '.join(names), watermark)

    def _stage_tables(self):
        """A state store writer fed while the snapshot is read, or None.

        The persister's queue is written first: nothing is applied while
        the resync buffers, so no older write can follow the snapshot's
        rows into the store.

        :raises StateUnavailable: the state store failed.
        """
        stage_tables = getattr(self._state, 'stage_tables', None)
        if stage_tables is None:
            return None
        self._flush_state()
        try:
            return stage_tables(self.stream, self.collector, self.fetcher)
        except Exception as exc:
            raise StateUnavailable(str(exc)[:200]) from exc

    def _store_tables(self, watermark, replace, drop=(), epoch=None,
                      stage=None):
        """Write snapshot tables to the state store (caller: _lock).

        First persists what the cache already shows (the persister's
        queue), then replaces ``replace`` (``{table: (rows, version)}``)
        at ``watermark``, drops the tables of ``drop`` and records
        ``epoch`` (when given). With ``stage`` (a
        :class:`consumer.staged_rows.StagedTables` that already holds
        the rows of ``replace``) only its transaction is finished.

        :raises StateUnavailable: the state store failed.
        """
        self._flush_state()
        unit = (self.stream, self.collector, self.fetcher)
        try:
            if stage is not None:
                stage.finish(watermark, {
                    table: version
                    for table, (_rows, version) in replace.items()})
                replace = {}
            for table, (rows, version) in replace.items():
                self._state.replace_table(*unit, table, rows, watermark,
                                          version)
            for table in drop:
                self._state.drop_table(*unit, table)
            if epoch is not None:
                self._state.set_epoch(*unit, epoch)
        except Exception as exc:
            raise StateUnavailable(str(exc)[:200]) from exc

    def _install_tables(self, watermark, tables, contents):
        """Swap some tables in at ``watermark`` (caller: _lock)."""
        self._store_tables(watermark, {
            table: (contents[table], info.get('version'))
            for table, info in tables.items()})
        events = []
        for table, info in tables.items():
            events.extend(self._cache.replace_table(table, contents[table]))
            self._known[table] = {'pk': info.get('pk'),
                                  'version': info.get('version')}
            if watermark > self._applied:
                self._table_seq[table] = watermark
        self._pacer.failures = 0
        self.last_error = None
        self._dispatch(events)
        self._buffering = False
        self._turns.wake_all()
        try:
            self._drain(self._clock())
        except StateUnavailable:
            pass  # stays buffered; poll() retries

    def _migrate(self):
        """Run the migration steps against a snapshot's tables.

        Returns False (nothing done) when a sequence number up to the
        snapshot's watermark is not buffered: then only a full resync
        is consistent.
        """
        with self._source.open(self._tables_filter) as snap:
            with self._lock:
                floor = self._applied
                if any(seq not in self._buffer
                       for seq in range(floor + 1, snap.watermark + 1)):
                    return False
                stored = {t: info['version']
                          for t, info in self._known.items()}
                view = self._cache.view()
                in_flight = [change for seq in range(floor + 1,
                                                     snap.watermark + 1)
                             for change in self._buffer[seq].changes]
            ctx = migrations.Context(self.stream, stored, dict(snap.tables),
                                     view, lambda t: dict(snap.rows(t)),
                                     in_flight)
            steps = migrations.steps() if self._steps is None else \
                self._steps
            plan = migrations.migrate(ctx, steps + self._extra_steps)
            watermark = snap.watermark
        with self._lock:
            self._install_plan(watermark, ctx, stored, plan)
        LOG.info('Stream %s: migration done at watermark %d: %s',
                 self.stream, watermark, ', '.join(
                     '%s %s' % (t, a[0] if a else 'dropped')
                     for t, a in sorted(plan.items())) or 'nothing to do')
        return True

    def _install_plan(self, watermark, ctx, stored, plan):
        """Apply a migration plan; caller holds _lock."""
        versions = ctx.versions
        self._store_tables(
            watermark,
            {table: (action[1], versions[table])
             for table, action in sorted(plan.items()) if action is not None},
            drop=[table for table, action in sorted(plan.items())
                  if action is None])
        self._persister.mark_durable(watermark)
        events = []
        for table, action in sorted(plan.items()):
            if action is None:
                events.extend(self._cache.drop_table(table))
                self._known.pop(table, None)
                self._retired.pop(table, None)
                self._table_seq.pop(table, None)
                continue
            events.extend(self._cache.replace_table(table, action[1]))
            self._known[table] = {'pk': ctx.published[table].get('pk'),
                                  'version': versions[table]}
            if stored.get(table) is not None:
                self._retired[table] = (stored[table], watermark)
            if watermark > self._applied:
                self._table_seq[table] = watermark
        self._pacer.failures = 0
        self._last_seen = self._clock()
        self.last_error = None
        self.counters['migrations'] += 1
        self._dispatch(events)
        self._set_live()
        try:
            self._drain(self._clock())
        except StateUnavailable:
            pass  # stays buffered; poll() retries

    def _resync_failed(self, cause, exc):
        with self._lock:
            self._pacer.failures += 1
            self.last_error = '%s: %s' % (type(exc).__name__,
                                          str(exc)[:200])
            self.counters['resync_failures'] += 1
            LOG.warning('Stream %s: resync (%s) failed (%s); retrying',
                        self.stream, cause, self.last_error)
            if isinstance(exc, exceptions.MigrationError):
                LOG.error('Stream %s: migration failed: %s', self.stream,
                          exc)
            elif isinstance(exc, Exception) and not isinstance(
                    exc, (exceptions.SnapshotFailed,
                          StateUnavailable)) and not _is_db_error(exc):
                LOG.exception('Stream %s: unexpected resync failure',
                              self.stream, exc_info=exc)
            self._pending = None
            now = self._clock()
            if cause == 'periodic' and self._status == LIVE:
                # The cache is still good: keep applying, retry later.
                self._buffering = False
                self._periodic_at = now + self._pacer.backoff()
                try:
                    self._drain(now)
                except StateUnavailable:
                    pass
                return
            self._request(cause, now)

    def _drift_inputs(self, watermark):
        """The cache view and the in-flight transactions; under _lock.

        In-flight: buffered transactions the snapshot already contains
        (applied < seq <= watermark), in order. While a resync runs
        nothing is applied, so both stay valid after the lock is released.
        """
        floor = self._applied if self._applied is not None else -1
        return self._cache.view(), [
            self._buffer[seq] for seq in sorted(self._buffer)
            if floor < seq <= watermark]

    def _record_drift(self, drift):
        for table, count in drift.items():
            LOG.warning('Stream %s: periodic resync found %d rows of %s '
                        'drifted', self.stream, count, table)
            self._metrics.drift.labels(stream=self.stream,
                                       table=table).inc(count)
            self.counters['drift'] += count

    def _drop_impossible(self, watermark, requested):
        """Forget buffered deltas no host can have sent (caller: _lock).

        When the snapshot was requested, the host had numbered nothing
        beyond the watermark it returned (numbers are given out under the
        lock the snapshot takes). A delta that arrived before the request
        yet carries a higher number is forged or from another incarnation
        of the stream: kept, it would wait for predecessors that never come
        and make the stream resync again and again.
        """
        bogus = buffer_mod.drop_impossible(self._buffer, watermark,
                                           requested)
        if bogus:
            self._reject('out_of_window', 'seq %d..%d arrived before a '
                         'snapshot at watermark %d: dropped'
                         % (min(bogus), max(bogus), watermark))

    def _install(self, watermark, tables, contents, cause, drift=None,
                 epoch=None, stage=None, owned=False):
        """Swap the snapshot in; caller holds _lock.

        ``epoch``: the snapshot's (None: the host did not say; then the
        epoch the stream changed to, or the current one). ``stage``: the
        state store transaction that already holds the rows (or None).
        ``owned``: the row dicts of ``contents`` are the snapshot's alone
        (``Snapshot.owned_rows``); the cache keeps them without a copy.
        """
        gone = [t for t in self._known if t not in tables]
        coming = self._epochs.coming
        epoch = self._epochs.for_install(epoch)
        self._store_tables(
            watermark, {table: (contents[table], info.get('version'))
                        for table, info in tables.items()},
            drop=gone, epoch=epoch, stage=stage)
        if coming is not None and epoch != coming:
            self._buffer.clear()  # numbered in another epoch
        self._epochs.installed(epoch)
        self._epoch_dirty = False
        self._hb_behind = None
        self._invalidated.clear()
        self._persister.mark_durable(watermark)
        events = []
        for table in tables:
            events.extend(self._cache.replace_table(table, contents[table],
                                                    owned=owned))
        for table in gone:
            events.extend(self._cache.drop_table(table))
        self._known = {t: {'pk': info.get('pk'), 'version': info.get(
            'version')} for t, info in tables.items()}
        self._applied = watermark
        self._table_seq = {}
        self._retired = {}
        self._pacer.failures = 0
        self._gap_since = None
        self._hb_ahead = None
        self._last_seen = self._clock()
        self.last_error = None
        self._schedule_periodic(self._clock())
        self._metrics.applied_seq.labels(stream=self.stream).set(watermark)
        self._record_drift(drift or {})
        self._dispatch(events)
        del events
        self._set_live()
        if self._gc_freeze_synced and not self._gc_frozen:
            self._gc_frozen = True
            LOG.info('Stream %s synced: %d objects frozen', self.stream,
                     gc_pause.freeze_survivors())
        try:
            self._drain(self._clock())
        except StateUnavailable:
            pass  # stays buffered; poll() retries

    def _set_live(self):
        self._buffering = False
        self._turns.wake_all()
        self._status = LIVE
        self._synced.set()
        self._metrics.synced.labels(stream=self.stream).set(1)

    def _run(self):
        while not self._stopping.is_set():
            try:
                wait = self.poll()
            except Exception:  # noqa: the worker must survive anything
                LOG.exception('Stream %s: reconciler worker error',
                              self.stream)
                wait = MAX_TICK
            self._wake.wait(wait)
            self._wake.clear()
