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

"""Applying the contiguous run of buffered transactions.

The part of :class:`~consumer.reconciler.core.Reconciler` that takes
the contiguous run after the applied position out of the reorder buffer
and applies it: ``cache.apply`` -> ``dispatcher.dispatch(events)`` ->
``persister.submit``. A run whose table versions need a migration stays
buffered and a schema resync is requested; a table invalidation plans a
targeted re-read of that table.
"""

import datetime

from oslo_log import log

from consumer.reconciler import buffer as buffer_mod
from consumer.reconciler import common
from oslo_publish import wire

LOG = log.getLogger(__name__)


class Apply(object):
    """Applies runs of buffered transactions (caller holds ``_lock``).

    Writes: ``_applied``, ``_buffer``, ``_table_seq``, ``_gaps``,
    ``_lag``, ``_invalidated``.
    """

    def _drain(self, now):
        """Apply the contiguous run after _applied; caller holds _lock."""
        progressed = False
        while True:
            self._count_duplicates(buffer_mod.drop_applied(self._buffer,
                                                           self._applied))
            run = buffer_mod.take_run(self._buffer, self._applied,
                                      common.BATCH_LIMIT)
            if not run:
                break
            if not self._schema_matches(run, now):
                for item in run:
                    self._buffer[item.seq] = item
                break
            self._apply(run)
            progressed = True
        self._gaps.drained(bool(self._buffer), progressed, self._applied,
                           now)

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
        self._gaps.behind = None
        versions = {table: info['version']
                    for table, info in self._known.items()}
        # The after-images are the message's own decoded dicts (see
        # Deltas.handle): the cache keeps them without a copy.
        events = self._cache.apply(changes, owned=True)
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
            raise common.StateUnavailable(str(exc)[:200]) from exc

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

    def _dispatch(self, events):
        if events:
            try:
                self._dispatcher.dispatch(events)
            except Exception:  # noqa: handlers never stop the stream
                LOG.exception('Stream %s: dispatching events failed',
                              self.stream)
