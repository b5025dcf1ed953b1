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

"""Running a resync: snapshot read, drift count, retries.

The part of :class:`~consumer.reconciler.core.Reconciler` that runs a
planned resync: it opens a snapshot (without ``_lock``, so messages
keep being buffered), reads its tables (:func:`.install.read_table`),
counts drift for a periodic resync (:mod:`.drift`) and installs it
(:mod:`.install`), or migrates in place for a schema change
(:mod:`.migrate`); a failure is retried with backoff. Also the targeted
re-read of invalidated tables.
"""

import contextlib
import time

from oslo_log import log

from consumer import exceptions
from consumer import gc_pause
from consumer.reconciler import buffer as buffer_mod
from consumer.reconciler import common
from consumer.reconciler import drift as drift_mod
from consumer.reconciler import install as install_mod

LOG = log.getLogger(__name__)


class Resync(object):
    """Runs resyncs (called by ``poll`` without ``_lock``; takes it).

    Writes: ``_pending``, ``_status``, ``_buffering``, ``_invalidated``,
    ``_resync_at``, ``_periodic_at``, ``last_error``, ``counters``.
    """

    def _resync(self, cause):
        now = self._clock()
        with self._lock:
            if self._pending is None:
                return
            self._pending = None
            self._pacer.started(now)
            self._buffering = True
            self._turns.wake_all()
            if self._status == common.INITIAL:
                self._status = common.SNAPSHOTTING
            elif cause != 'periodic':
                self._status = common.RESYNCING
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
            # The rows read all stay alive (in the cache): from the
            # snapshot's opening no collection scans them while they are
            # read and swapped in, and they then go to the oldest
            # generation unscanned (see consumer.gc_pause).
            with contextlib.ExitStack() as pause:
                with self._source.open(self._tables_filter) as snap:
                    pause.enter_context(gc_pause.paused())
                    watermark = snap.watermark
                    epoch = getattr(snap, 'epoch', None)
                    owned = getattr(snap, 'owned_rows', False)
                    tables = dict(snap.tables)
                    stage = self._stage_tables()
                    contents = {
                        name: install_mod.read_table(snap, name, stage)
                        for name in tables}
                if stage is not None and stage.aborted:
                    stage = None  # a repeated key: whole tables later
                read = time.monotonic()
                drift = None
                if cause == 'periodic' and self._applied is not None:
                    with self._lock:
                        view, in_flight = self._drift_inputs(watermark)
                    drift = drift_mod.count_drift(view, in_flight, tables,
                                                  contents)
                with self._lock:
                    self._drop_impossible(watermark, requested)
                    self._install(watermark, tables, contents, cause,
                                  drift, epoch, stage, owned)
                gc_pause.promote_young()
        except Exception as exc:  # noqa: every failure is retried
            if stage is not None:
                stage.abort()  # the previous rows and positions stay
            self._resync_failed(cause, exc)
            return
        self._freeze_synced()
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
                    # A resync is due. A full one re-reads these tables
                    # (and forgets them); a schema migration may reshape
                    # them in place: they are re-read after it.
                    self._keep_invalidated(invalidated)
                    return
                if watermark < max(s for s, _c in invalidated.values()):
                    raise exceptions.SnapshotFailed(
                        'watermark %d before the invalidation' % watermark)
                moved = sorted(
                    t for t, info in tables.items() if t in self._known and
                    self._known[t]['version'] != info.get('version'))
                if moved:
                    # The host publishes a new version of the table (e.g.
                    # a binlog reader that read DDL invalidates the table
                    # and re-learns it): the migration steps handle it,
                    # as for a delta with that version; the re-read
                    # follows.
                    LOG.info('Stream %s: %s changed version; migrating '
                             'before re-reading', self.stream,
                             ', '.join(moved))
                    self._keep_invalidated(invalidated)
                    self._request('schema', self._clock())
                    return
                self._install_tables(watermark, tables, contents)
        except Exception as exc:  # noqa: every failure is retried
            with self._lock:
                self._keep_invalidated(invalidated)
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
                    except common.StateUnavailable:
                        pass
            return
        LOG.info('Stream %s: re-read %s at watermark %d', self.stream,
                 ', '.join(names), watermark)

    def _keep_invalidated(self, invalidated):
        """Plan ``invalidated`` ({table: (seq, cause)}) again (_lock)."""
        for table, item in invalidated.items():
            old = self._invalidated.get(table)
            if old is None or old[0] < item[0]:
                self._invalidated[table] = item

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
                          common.StateUnavailable)) and \
                    not common.is_db_error(exc):
                LOG.exception('Stream %s: unexpected resync failure',
                              self.stream, exc_info=exc)
            self._pending = None
            now = self._clock()
            if cause == 'periodic' and self._status == common.LIVE:
                # The cache is still good: keep applying, retry later.
                self._buffering = False
                self._periodic_at = now + self._pacer.backoff()
                try:
                    self._drain(now)
                except common.StateUnavailable:
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
