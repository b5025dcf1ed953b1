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

"""The persister: applied transactions -> the state store, in bulk.

The reconciler applies a contiguous run of transactions to the cache as
soon as it is verified and in order, then hands the run to the persister
(:meth:`Persister.submit`, in sequence order). The persister writes
everything handed to it since its last write in ONE state-store
transaction (:meth:`consumer.state.StateStore.commit_batch`) and then
raises its *durable* position. The listener acknowledges a message to
the broker only once the durable position covers it
(:meth:`Persister.wait_durable`), so:

* readers see a delta one state-store commit earlier than before;
* a busy stream costs one state-store commit per write cycle, not per
  message (group commit);
* a crash between the cache update and the write costs nothing: the
  messages were not acknowledged, the broker redelivers them and the
  restarted consumer applies them from its stored position.

Failure policy: a failed write keeps its transactions queued, in order,
and is retried (capped backoff) until it succeeds or the persister is
stopped; nothing is acknowledged meanwhile. Without a thread
(``threaded=False``, tests and single-threaded drivers) :meth:`submit`
writes at once and raises what the store raised; the transactions stay
queued for :meth:`flush`.
"""

import threading
import time

from oslo_log import log

from consumer import snapshot_write
from consumer import staged_rows

LOG = log.getLogger(__name__)

#: Longest pause between two attempts at a failing state store.
MAX_BACKOFF = 2.0

#: A snapshot write given up at stop (not a store failure).
_CANCELLED = (snapshot_write.Cancelled, staged_rows.Cancelled)


class _Run(object):
    """One submitted run: its last seq, commit time and changes.

    ``snapshot``: a :class:`consumer.snapshot_write.SnapshotWrite`
    instead (``seq`` is its watermark), written on its own.
    """

    __slots__ = ('seq', 'committed_at', 'changes', 'versions', 'snapshot')

    def __init__(self, seq, committed_at, changes, versions, snapshot=None):
        self.seq = seq
        self.committed_at = committed_at
        self.changes = changes
        self.versions = versions
        self.snapshot = snapshot


class Persister(object):
    """Writes a stream's applied runs to the state store, grouped.

    :param state: the :class:`consumer.state.StateStore`.
    :param stream, collector, fetcher: the state unit.
    :param threaded: write on a thread of its own (else in
        :meth:`submit` and :meth:`flush`).
    :param on_error: ``callable(exc)`` told of every failed write (for
        the reconciler's counters and last error).
    """

    def __init__(self, state, stream, collector, fetcher, threaded=True,
                 on_error=None):
        self._state = state
        self._unit = (stream, collector, fetcher)
        self._threaded = threaded
        self._on_error = on_error
        #: Guards everything below.
        self._mutex = threading.Lock()
        #: Notified when the queue fills or empties, a write ends or the
        #: persister stops (the writer thread and flush()).
        self._cond = threading.Condition(self._mutex)
        #: {seq: [Condition]} of the threads in wait_durable(): a write
        #: wakes only those it made durable (not every waiting thread).
        self._waiters = {}
        #: Runs handed over and not yet written, in seq order.
        self._queue = []
        #: True while the writer holds runs taken from the queue.
        self._writing = False
        #: Highest seq whose effect is in the state store.
        self._durable = None
        self._failures = 0
        self._stopping = False
        self._thread = None

    # ------------------------------------------------------------ public

    @property
    def threaded(self):
        """True when runs are written on the persister's own thread."""
        return self._threaded

    @property
    def durable(self):
        """Highest seq whose effect is persisted (None: nothing yet)."""
        with self._cond:
            return self._durable

    def start(self):
        """Start the writer thread (threaded mode; idempotent)."""
        if not self._threaded or self._thread is not None:
            return
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, name='persister-%s' % self._unit[0],
            daemon=True)
        self._thread.start()

    def stop(self, timeout=5.0):
        """Write what is queued (within ``timeout``), then stop.

        A snapshot still being written after ``timeout`` is cancelled
        (rolled back): nothing it covers was acknowledged, and the
        stored state stays the one before it.
        """
        if not self.flush(timeout):
            with self._cond:
                snapshots = [run.snapshot for run in self._queue
                             if run.snapshot is not None]
            for snapshot in snapshots:
                LOG.warning('Stream %s: stopping before the snapshot at '
                            '%d is in the state store; it is rolled back',
                            self._unit[0], snapshot.watermark)
                snapshot.cancel()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            self._wake(None)
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def mark_durable(self, seq):
        """The store holds everything up to ``seq`` (resume, snapshot).

        Only called with the queue empty (after :meth:`flush`).
        """
        with self._cond:
            self._durable = seq
            self._cond.notify_all()
            self._wake(seq)

    def submit_snapshot(self, write):
        """Queue an installed snapshot's state store write.

        ``write``: a :class:`consumer.snapshot_write.SnapshotWrite`. It
        is written before every run submitted after it, on its own;
        until it is, nothing counts as durable (the snapshot may start a
        new numbering), and then the durable position is its watermark.

        :raises Exception: unthreaded mode only: what the store raised
            (it stays queued for :meth:`flush`).
        """
        with self._cond:
            self._queue.append(_Run(write.watermark, None, [], {},
                                    snapshot=write))
            self._durable = None
            self._cond.notify_all()
        if not self._threaded:
            self._write_pending(raise_errors=True)

    @property
    def snapshot_pending(self):
        """True while a submitted snapshot is not yet written."""
        with self._cond:
            return any(run.snapshot is not None for run in self._queue)

    def submit(self, seq, committed_at, changes, versions):
        """Queue a run applied to the cache (seq order) for writing.

        :raises Exception: unthreaded mode only: what the store raised
            (the run stays queued for :meth:`flush`).
        """
        with self._cond:
            self._queue.append(_Run(seq, committed_at, changes,
                                    dict(versions)))
            self._cond.notify_all()
        if not self._threaded:
            self._write_pending(raise_errors=True)

    def flush(self, timeout=None):
        """Write everything queued; True when done within ``timeout``.

        Unthreaded: writes now and raises what the store raised.
        """
        if not self._threaded:
            self._write_pending(raise_errors=True)
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._cond.notify_all()
            while self._queue or self._writing:
                left = None if deadline is None else \
                    deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                if self._thread is None:
                    return False
                self._cond.wait(left if left is not None else 0.5)
        return True

    def wait_durable(self, seq, timeout):
        """Block until ``seq`` is persisted; True, or False on timeout.

        Unthreaded: first tries to write what is queued.
        """
        if not self._threaded:
            self._write_pending(raise_errors=False)
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._durable is not None and self._durable >= seq:
                return True
            waiter = threading.Condition(self._mutex)
            self._waiters.setdefault(seq, []).append(waiter)
            try:
                while self._durable is None or self._durable < seq:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._stopping:
                        return False
                    waiter.wait(left)
                return True
            finally:
                waiters = self._waiters[seq]
                waiters.remove(waiter)
                if not waiters:
                    del self._waiters[seq]

    def _wake(self, durable):
        # Caller holds the lock: wake the waiters of seqs up to
        # ``durable`` (None: every waiter, the persister stops).
        for seq, waiters in self._waiters.items():
            if durable is None or seq <= durable:
                for waiter in waiters:
                    waiter.notify()

    def backlog(self):
        """Runs applied to the cache and not yet persisted."""
        with self._cond:
            return len(self._queue)

    # ----------------------------------------------------------- writing

    def _run(self):
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping and not self._queue:
                    return
            if not self._write_pending(raise_errors=False):
                delay = min(MAX_BACKOFF, 0.05 * (2 ** self._failures))
                with self._cond:
                    if self._stopping:
                        return
                    self._cond.wait(delay)

    def _write_pending(self, raise_errors):
        """Write what is queued; True on success.

        Either a queued snapshot alone, or every run up to the next
        snapshot in one transaction. Unthreaded, everything queued.
        """
        while True:
            with self._cond:
                pending = bool(self._queue) and not self._writing
            if not pending:
                return True
            if not self._write_next(raise_errors):
                return False
            if self._threaded:
                return True

    def _take(self):
        # Caller holds the lock: the runs of the next write.
        if self._queue[0].snapshot is not None:
            return self._queue[:1]
        runs = []
        for run in self._queue:
            if run.snapshot is not None:
                break
            runs.append(run)
        return runs

    def _write_runs(self, runs):
        last = runs[-1]
        if last.snapshot is not None:
            last.snapshot.write()
            return
        if len(runs) == 1:
            changes = last.changes
        else:
            changes = [change for run in runs for change in run.changes]
        self._state.commit_batch(self._unit[0], self._unit[1],
                                 self._unit[2], last.seq,
                                 last.committed_at, changes,
                                 last.versions)

    def _write_next(self, raise_errors):
        with self._cond:
            if not self._queue or self._writing:
                return True
            runs = self._take()
            self._writing = True
        last = runs[-1]
        try:
            self._write_runs(runs)
        except Exception as exc:
            self._failures += 1
            with self._cond:
                self._writing = False
                self._cond.notify_all()
            if self._on_error is not None and not isinstance(
                    exc, _CANCELLED):
                self._on_error(exc)
            if raise_errors:
                raise
            return False
        self._failures = 0
        with self._cond:
            del self._queue[:len(runs)]
            self._writing = False
            if last.snapshot is not None or self._durable is None:
                # A snapshot sets it exactly (its numbering may be new).
                self._durable = last.seq
            else:
                self._durable = max(self._durable, last.seq)
            self._cond.notify_all()
            self._wake(self._durable)
        if last.snapshot is not None:
            LOG.info('Stream %s: snapshot at watermark %d is in the state '
                     'store', self._unit[0], last.seq)
            try:
                last.snapshot.after_durable()
            except Exception as exc:  # noqa: statistics only
                LOG.warning('Stream %s: after the snapshot at %d: %s',
                            self._unit[0], last.seq, type(exc).__name__)
        return True
