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

A snapshot's own state store write follows its install on the
persister's thread (:mod:`.install`): the stream is synced before the
snapshot is durable, and nothing after it is acknowledged before it is.

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

This module holds the :class:`Reconciler`'s state, lifecycle, ``poll``
and status; its behaviour is split by concept into parts it inherits
(each a module of this package, working on that state under ``_lock``):
:mod:`.deltas` (message intake), :mod:`.apply` (applying runs),
:mod:`.watch` (heartbeats, timers, resync requests), :mod:`.settle`
(acknowledgement against the persisted position), :mod:`.resume`,
:mod:`.resync`, :mod:`.install` and :mod:`.migrate`. The vocabulary
(states, limits, :class:`StateUnavailable`) is :mod:`.common`,
re-exported here.
"""

import collections
import random
import threading
import time

from oslo_log import log

from consumer import persister as persister_mod
from consumer.reconciler import apply as apply_mod
from consumer.reconciler import catchup
from consumer.reconciler import common
from consumer.reconciler import deltas
from consumer.reconciler import epochs as epochs_mod
from consumer.reconciler import gaps as gaps_mod
from consumer.reconciler import install as install_mod
from consumer.reconciler import migrate
from consumer.reconciler import resume
from consumer.reconciler import resync as resync_mod
from consumer.reconciler import settle
from consumer.reconciler import timers
from consumer.reconciler import turns as turns_mod
from consumer.reconciler import watch

LOG = log.getLogger(__name__)

# Re-exported: the reconciler's vocabulary lives in .common.
INITIAL = common.INITIAL
SNAPSHOTTING = common.SNAPSHOTTING
LIVE = common.LIVE
RESYNCING = common.RESYNCING
STOPPED = common.STOPPED
CAUSES = common.CAUSES
SNAPSHOT_BUFFER = common.SNAPSHOT_BUFFER
BATCH_LIMIT = common.BATCH_LIMIT
MAX_TICK = common.MAX_TICK
FLUSH_TIMEOUT = common.FLUSH_TIMEOUT
StateUnavailable = common.StateUnavailable
_is_db_error = common.is_db_error


class Reconciler(deltas.Deltas, apply_mod.Apply, watch.Watch,
                 settle.Settle, resume.Resume, resync_mod.Resync,
                 install_mod.Install, migrate.Migrate):
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
        #: Write a snapshot to the state store before showing it.
        self._durable_first = opts.snapshot_durable_before_synced
        self._gc_freeze_synced = opts.gc_freeze_after_sync
        self._gc_freeze = opts.gc_freeze_after_resume or \
            self._gc_freeze_synced
        #: Frozen once already (gc_freeze_after_sync: the first sync).
        self._gc_frozen = False
        self._window = opts.reorder_window
        #: Keeps a resume's loaded rows out of collections until caught up.
        self._catch_up = catchup.CatchUpHold(opts.inactivity_timeout)
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
        #: Notified (under _lock) when a delta enters the buffer while
        #: the stream buffers: a migration waits on it for the deltas
        #: its snapshot's watermark covers that are still in flight.
        self._arrived = threading.Condition(self._lock)
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
        #: Gap, heartbeat (ahead of or behind _applied) and inactivity
        #: clocks, and the time of the last message received.
        self._gaps = gaps_mod.GapClocks(opts.gap_timeout,
                                        opts.inactivity_timeout)
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

    def wait_durable(self, timeout=None):
        """Block until synced and durable; True, or False on timeout.

        Durable: everything the cache shows when synced (the snapshot
        and the deltas applied up to then) is in the state store.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._synced.wait(timeout):
            return False
        with self._lock:
            seq = self._applied
        left = 3600.0 * 24 if deadline is None else \
            max(deadline - time.monotonic(), 0.0)
        return self._persister.wait_durable(seq, left)

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
            self._arrived.notify_all()
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

    def add_migration_step(self, step):
        """Run ``step`` (a MigrationStep) after the registered ones."""
        self._extra_steps.append(step)

    def resync(self, cause='manual'):
        """Request a resync of the stream's tables."""
        with self._lock:
            self._request(cause, self._clock())

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
            if self._gaps.armed():
                wait = min(wait, self._gaps.gap_timeout / 2.0)
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
