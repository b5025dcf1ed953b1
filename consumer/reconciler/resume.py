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

"""Resuming a stream from the state store.

The part of :class:`~consumer.reconciler.core.Reconciler` that starts
a stream from the state store: its rows go to the cache, its positions
set the applied seq (the lowest of the tables), its epoch is adopted;
with no usable state, the initial snapshot is planned instead.
"""

from oslo_log import log

from consumer import gc_pause
from consumer.reconciler import common
from consumer.reconciler import epochs as epochs_mod

LOG = log.getLogger(__name__)


class Resume(object):
    """Loads the stored rows and positions at start.

    Writes (under ``_lock``): ``_applied``, ``_known``, ``_table_seq``,
    ``_epochs``, ``_gaps``; then goes live like an install.
    """

    def _resume(self):
        """Load the stored state, or plan the initial snapshot."""
        now = self._clock()
        positions = {}
        try:
            positions = self._state.load(self.stream, self.collector,
                                         self.fetcher,
                                         tables=self._tables_filter)
        except Exception as exc:  # noqa: a broken store means resync
            if not common.is_db_error(exc):
                raise
            LOG.warning('Stream %s: cannot read the state store (%s); '
                        'starting with a snapshot', self.stream,
                        type(exc).__name__)
        seqs = [scope.seq for scope in positions.values()
                if scope.seq is not None]
        with self._lock:
            self._gaps.last_seen = now
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
            except common.StateUnavailable:
                pass  # stays buffered; poll() retries
