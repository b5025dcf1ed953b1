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

"""Snapshot tables written to the state store while they are read.

A resync reads a snapshot page by page; :class:`StagedTables` writes the
pages into the state store's mirrored rows as they come instead of after
the last one. A thread of its own holds ONE write transaction of the
store: for each table it deletes the table's mirrored rows and loads the
pages with one streamed ``COPY`` (:func:`consumer.bulk_rows.insert_rows`)
that pulls them from a queue the reading thread fills. :meth:`finish`
sets the tables' positions in the same transaction and commits it;
:meth:`abort` (or any failure, of the reading or of the writing) rolls it
back. Until the commit the previous rows and positions are what every
other reader sees, and a failure mid-sync leaves them intact.

Used by the reconciler through
:meth:`consumer.state.StateStore.stage_tables`.
"""

import queue
import threading

from oslo_log import log

LOG = log.getLogger(__name__)

_END = object()      # the current table's last page
_ABORT = object()    # roll back


class _Aborted(Exception):
    pass


class Cancelled(Exception):
    """The load was cancelled (:meth:`StagedTables.cancel`); rolled back."""


class StagedTables(object):
    """One transaction replacing snapshot tables as their pages come.

    ``table(name)`` starts a table, ``add(items)`` queues a page of
    ``(key tuple, row dict)``, ``finish(seq, versions)`` commits and
    ``abort()`` rolls back. Not thread-safe: one reading thread calls
    them in that order.
    """

    def __init__(self, store, stream, collector, fetcher):
        self._store = store
        self._unit = (stream, collector, fetcher)
        self._queue = queue.SimpleQueue()
        self._done = threading.Event()
        self._open = False
        self._closed = False
        self._aborted = False
        #: Set by cancel(): the writer stops at its next page.
        self._cancelled = threading.Event()
        self._loaded = 0
        #: The exception that ended the writer, if any.
        self.error = None
        self._thread = threading.Thread(
            target=self._write, name='staged-rows-%s' % stream, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ reader

    def _check(self):
        if self._closed:
            raise RuntimeError('staged tables already finished')
        if self.error is not None:
            raise self.error

    def table(self, name):
        """Start writing table ``name`` (ends the previous one)."""
        self._check()
        if self._open:
            self._queue.put(_END)
        self._queue.put(('table', name))
        self._open = True

    def add(self, items):
        """Queue a page of ``(key, row)`` pairs of the current table."""
        self._check()
        if items:
            self._queue.put(items)

    def finish(self, seq, versions, analyze=True):
        """Set the positions and commit.

        The positions of the tables of ``versions`` (``{table:
        version}``) are set to ``seq`` exactly, in the transaction that
        replaced their rows. With ``analyze`` the store's statistics are
        then refreshed (else call :meth:`analyze` later).

        :raises: whatever the writer failed with (the transaction is
            then rolled back).
        """
        self._check()
        if self._open:
            self._queue.put(_END)
            self._open = False
        self._closed = True
        self._queue.put(('commit', seq, dict(versions)))
        self._done.wait()
        if self.error is not None:
            raise self.error
        if analyze:
            self.analyze()

    def analyze(self):
        """Refresh the store's statistics after a load of rows."""
        if self._loaded:
            self._store._analyze_rows()

    @property
    def aborted(self):
        """True once :meth:`abort` was called."""
        return self._aborted

    def abort(self):
        """Roll back (idempotent; waits for the writer to end)."""
        if not self._done.is_set() and not self._closed:
            self._closed = True
            self._aborted = True
            self._queue.put(_ABORT)
        self._done.wait()

    def cancel(self):
        """Roll back even after :meth:`finish` was called.

        For a finish still loading queued pages (a consumer stopping
        while its snapshot is being made durable): the writer stops at
        its next page and rolls back; :meth:`finish` then raises
        :class:`Cancelled`. Waits for the writer to end.
        """
        self._cancelled.set()
        if not self._closed:
            self.abort()
            return
        self._done.wait()

    # ------------------------------------------------------------ writer

    def _pages(self):
        # The current table's rows, as the reader queues them.
        get = self._queue.get
        while True:
            item = get()
            if item is _END:
                return
            if item is _ABORT or self._cancelled.is_set():
                raise _Aborted()
            self._loaded += len(item)
            yield from item

    def _write(self):
        stream, collector, fetcher = self._unit
        store = self._store
        try:
            with store._write() as conn:
                while True:
                    item = self._queue.get()
                    if item is _ABORT:
                        raise _Aborted()
                    if item[0] == 'table':
                        store._refill_rows(conn, stream, item[1],
                                           self._pages())
                        continue
                    if self._cancelled.is_set():
                        raise _Aborted()
                    _cmd, seq, versions = item
                    for table, version in sorted(versions.items()):
                        store._set_snapshot_position(
                            conn, stream, collector, fetcher, table, seq,
                            version)
                    break
        except _Aborted:
            LOG.debug('Staged tables of stream %s rolled back', stream)
            if self._cancelled.is_set():
                self.error = Cancelled('staged tables of stream %s '
                                       'cancelled' % stream)
        except Exception as exc:  # noqa: raised in the reading thread
            self.error = exc
        finally:
            self._done.set()
