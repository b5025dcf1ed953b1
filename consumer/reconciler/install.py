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

"""Installing a snapshot: reading its tables and swapping them in.

:func:`read_table` collects a table's rows for the cache and, when the
reconciler stages the state store write
(:class:`consumer.staged_rows.StagedTables`), hands every page to it as
soon as it is read, so the store is written while the next pages are
still coming.

:class:`Install` (part of :class:`~consumer.reconciler.core.Reconciler`)
swaps a snapshot in: the cache, then the buffered deltas with ``seq``
above the watermark are applied. Its state store write
(:class:`consumer.snapshot_write.SnapshotWrite`) goes to the persister,
which finishes it in the background before it writes any of those
deltas and raises the durable position to the watermark only once it
is committed: the stream is synced (readable) before its snapshot is
durable, and nothing after the snapshot is acknowledged before it is.
With ``[consumer] snapshot_durable_before_synced`` (or an unthreaded
persister) the store is written first, after everything the cache
already shows is persisted, as the re-read of invalidated tables always
does.
"""

import itertools

from oslo_log import log

from consumer import gc_pause
from consumer import snapshot_write
from consumer.reconciler import common

LOG = log.getLogger(__name__)

#: Rows handed to the state store writer at a time.
PAGE = 1000


def read_table(snap, name, stage=None):
    """``{key tuple: row dict}`` of table ``name`` of ``snap``.

    A key read twice keeps its last row, as in a dict (a table without a
    primary key has the one key ``()``). A streamed load cannot take a
    key twice: then ``stage`` is aborted before the repeated page reaches
    it and the caller writes the whole tables at the install instead
    (``stage.aborted``).

    :param stage: a :class:`consumer.staged_rows.StagedTables` or None.
    :raises consumer.exceptions.SnapshotFailed: the snapshot failed.
    """
    rows = snap.rows(name)
    if stage is not None and stage.aborted:
        stage = None
    if stage is not None:
        stage.table(name)
    contents = {}
    count = 0
    islice = itertools.islice
    while True:
        page = list(islice(rows, PAGE))
        if not page:
            break
        count += len(page)
        contents.update(page)
        if stage is None:
            continue
        if count != len(contents):
            stage.abort()
            stage = None
            continue
        stage.add(page)
    return contents


class Install(object):
    """Swaps snapshot tables in (caller holds ``_lock``).

    Writes: ``_known``, ``_applied``, ``_table_seq``, ``_retired``,
    ``_epochs``, ``_buffer``, ``_status``, ``_buffering``; sets
    ``_synced``.
    """

    def _flush_state(self):
        """Persist what the cache shows before writing a snapshot."""
        try:
            done = self._persister.flush(common.FLUSH_TIMEOUT)
        except Exception as exc:
            raise common.StateUnavailable(str(exc)[:200]) from exc
        if not done:
            raise common.StateUnavailable(
                'state store writes are %d runs behind'
                % self._persister.backlog())

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
            raise common.StateUnavailable(str(exc)[:200]) from exc

    def _snapshot_write(self, watermark, replace, drop=(), epoch=None,
                        stage=None):
        """The :class:`~consumer.snapshot_write.SnapshotWrite` of these.

        ``replace``: ``{table: (rows, version)}`` at ``watermark``;
        ``drop``: tables to forget; ``epoch``: to record (when given);
        ``stage``: a :class:`consumer.staged_rows.StagedTables` that
        already holds the rows of ``replace``.
        """
        return snapshot_write.SnapshotWrite(
            self._state, (self.stream, self.collector, self.fetcher),
            watermark, replace, drop=drop, epoch=epoch, stage=stage)

    def _store_tables(self, watermark, replace, drop=(), epoch=None,
                      stage=None):
        """Write snapshot tables to the state store (caller: _lock).

        First persists what the cache already shows (the persister's
        queue), then writes :meth:`_snapshot_write` of the arguments.

        :raises StateUnavailable: the state store failed.
        """
        self._flush_state()
        write = self._snapshot_write(watermark, replace, drop, epoch, stage)
        try:
            write.write()
        except Exception as exc:
            raise common.StateUnavailable(str(exc)[:200]) from exc
        write.after_durable()

    def _in_background(self):
        """True when an install's store write follows it (caller: _lock).

        Only with the persister's own thread (which writes it before
        the deltas applied after it) and unless
        ``[consumer] snapshot_durable_before_synced``.
        """
        return self._persister.threaded and not self._durable_first

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
        except common.StateUnavailable:
            pass  # stays buffered; poll() retries

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
        replace = {table: (contents[table], info.get('version'))
                   for table, info in tables.items()}
        background = self._in_background()
        if background:
            # Written by the persister before the deltas applied from
            # now on; durable (and acknowledged) only then.
            self._persister.submit_snapshot(self._snapshot_write(
                watermark, replace, drop=gone, epoch=epoch, stage=stage))
        else:
            self._store_tables(watermark, replace, drop=gone, epoch=epoch,
                               stage=stage)
            self._persister.mark_durable(watermark)
        del replace
        if coming is not None and epoch != coming:
            self._buffer.clear()  # numbered in another epoch
        self._epochs.installed(epoch)
        self._epoch_dirty = False
        self._gaps.behind = None
        self._invalidated.clear()
        events = []
        # Without a change handler the ADD events of a first fill (one
        # per row) would be built for nobody.
        wanted = bool(self._dispatcher.names())
        for table in tables:
            events.extend(self._cache.replace_table(
                table, contents[table], owned=owned, events=wanted))
        for table in gone:
            events.extend(self._cache.drop_table(table))
        self._known = {t: {'pk': info.get('pk'), 'version': info.get(
            'version')} for t, info in tables.items()}
        self._applied = watermark
        self._table_seq = {}
        self._retired = {}
        self._pacer.failures = 0
        self._gaps.reset()
        self._gaps.last_seen = self._clock()
        self.last_error = None
        self._schedule_periodic(self._clock())
        self._metrics.applied_seq.labels(stream=self.stream).set(watermark)
        self._record_drift(drift or {})
        self._dispatch(events)
        del events
        self._set_live()
        try:
            self._drain(self._clock())
        except common.StateUnavailable:
            pass  # stays buffered; poll() retries

    def _freeze_synced(self):
        """``gc_freeze_after_sync``: freeze what the first sync left.

        Called by the resync once its collector pause ended (the
        collector must run to freeze).
        """
        with self._lock:
            if not self._gc_freeze_synced or self._gc_frozen or \
                    self._status != common.LIVE:
                return
            self._gc_frozen = True
            LOG.info('Stream %s synced: %d objects frozen', self.stream,
                     gc_pause.freeze_survivors())

    def _set_live(self):
        self._buffering = False
        self._turns.wake_all()
        self._status = common.LIVE
        self._synced.set()
        self._metrics.synced.labels(stream=self.stream).set(1)
