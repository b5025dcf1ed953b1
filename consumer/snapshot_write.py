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

"""Writing an installed snapshot to the state store.

A :class:`SnapshotWrite` holds everything the state store must record
for a snapshot installed at a watermark: the tables' rows and positions
(``replace``), the tables that are gone (``drop``) and the stream's
epoch. :meth:`SnapshotWrite.write` records it, in that order:

* the rows and positions of the snapshot tables, in ONE transaction:
  the one a :class:`consumer.staged_rows.StagedTables` filled while the
  snapshot was read (it is finished), or, without it or after it
  failed, :meth:`consumer.state.StateStore.replace_table` table by
  table from the rows the cache holds (each its own transaction; the
  positions of a crash in between are per table, as before);
* then the gone tables are dropped and the epoch recorded.

The reconciler calls it at the install (``[consumer]
snapshot_durable_before_synced``) or hands it to the persister
(:meth:`consumer.persister.Persister.submit_snapshot`), which runs it
before any delta applied after the snapshot, retries it until it
succeeds, and only then raises the durable position to the watermark.
The row dicts are shared with the cache, which never mutates them.
"""

from oslo_log import log

LOG = log.getLogger(__name__)


class SnapshotWrite(object):
    """The state store's part of one snapshot install.

    :param state: the :class:`consumer.state.StateStore`.
    :param unit: ``(stream, collector, fetcher)``.
    :param watermark: the snapshot's watermark (the positions' seq).
    :param replace: ``{table: (rows by key, version)}``.
    :param drop: tables to forget.
    :param epoch: the epoch to record (None: leave it).
    :param stage: a :class:`consumer.staged_rows.StagedTables` holding
        the rows of ``replace`` already, or None.
    """

    def __init__(self, state, unit, watermark, replace, drop=(),
                 epoch=None, stage=None):
        self._state = state
        self._unit = tuple(unit)
        self.watermark = watermark
        self._replace = replace
        self._drop = list(drop)
        self._epoch = epoch
        self._stage = stage
        #: True once the rows and positions are committed.
        self._rows_done = False
        #: Set by cancel(): the write gives up.
        self._cancelled = False
        #: The statistics refresh left for after_durable(), or None.
        self._analyze = None

    def write(self):
        """Record the snapshot; raises what the store raised.

        Then call :meth:`after_durable`.

        Idempotent: a failed write can be called again (the staged
        transaction is then replaced by whole-table writes).
        """
        if not self._rows_done:
            self._write_rows()
            self._rows_done = True
        for table in self._drop:
            self._state.drop_table(*self._unit, table)
        if self._epoch is not None:
            self._state.set_epoch(*self._unit, self._epoch)

    def _write_rows(self):
        stage = self._stage
        if stage is not None:
            try:
                stage.finish(self.watermark, {
                    table: version
                    for table, (_rows, version) in self._replace.items()},
                    analyze=False)
                self._analyze = stage.analyze
                return
            except Exception:
                # Rolled back: a retry writes the whole tables.
                self._stage = None
                raise
        for table, (rows, version) in self._replace.items():
            if self._cancelled:
                raise Cancelled('snapshot write at %d cancelled'
                                % self.watermark)
            self._state.replace_table(*self._unit, table, rows,
                                      self.watermark, version)

    def after_durable(self):
        """Work that need not delay the durable position (statistics).

        Called once :meth:`write` succeeded and the waiters for the
        watermark were woken, before anything else is written.
        """
        analyze, self._analyze = self._analyze, None
        if analyze is not None:
            analyze()

    def cancel(self):
        """Give up: roll back a staged load still in progress (at stop).

        Tables already written by whole-table writes stay written (each
        with its own position, as a crash between them would leave).
        """
        self._cancelled = True
        stage = self._stage
        if stage is not None:
            stage.cancel()


class Cancelled(Exception):
    """The snapshot write was cancelled before it was complete."""
