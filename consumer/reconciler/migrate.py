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

"""Migrating a stream's tables in place after a schema change.

The part of :class:`~consumer.reconciler.core.Reconciler` that runs
the migration steps (:mod:`consumer.migrations`) against a snapshot
when a delta announces a new table version, instead of a full resync,
when every seq up to the snapshot's watermark is buffered.
"""

import time

from oslo_log import log

from consumer import migrations
from consumer.reconciler import common
from oslo_publish import wire

LOG = log.getLogger(__name__)


class Migrate(object):
    """Schema migrations (``_migrate`` takes ``_lock`` itself).

    Writes: ``_known``, ``_retired``, ``_table_seq``, ``_invalidated``
    (a table reshaped in place over an invalidation), then goes live.
    """

    def _migrate(self):
        """Run the migration steps against a snapshot's tables.

        Every sequence number up to the snapshot's watermark must be
        buffered. The host numbered them before the snapshot opened, so
        those still missing are in flight (the snapshot often overtakes
        the last deltas of a busy host): they are awaited for up to
        ``gap_timeout``. Returns False (nothing done) when one is still
        missing then: only a full resync is consistent.
        """
        with self._source.open(self._tables_filter) as snap:
            with self._lock:
                floor = self._applied
                if not self._await_buffered(floor, snap.watermark):
                    LOG.info('Stream %s: deltas up to the migration '
                             'snapshot\'s watermark %d did not arrive '
                             'within %.1fs; resynchronising in full',
                             self.stream, snap.watermark,
                             self._gaps.gap_timeout)
                    return False
                stored = {t: info['version']
                          for t, info in self._known.items()}
                view = self._cache.view()
                in_flight = [change for seq in range(floor + 1,
                                                     snap.watermark + 1)
                             for change in self._buffer[seq].changes]
                invalid = {change.table: (seq, change.cause)
                           for seq in range(floor + 1, snap.watermark + 1)
                           for change in self._buffer[seq].changes
                           if change.op == wire.INVALIDATE}
            ctx = migrations.Context(self.stream, stored, dict(snap.tables),
                                     view, lambda t: dict(snap.rows(t)),
                                     in_flight)
            steps = migrations.steps() if self._steps is None else \
                self._steps
            plan = migrations.migrate(ctx, steps + self._extra_steps)
            watermark = snap.watermark
        with self._lock:
            self._install_plan(watermark, ctx, stored, plan, invalid)
        LOG.info('Stream %s: migration done at watermark %d: %s',
                 self.stream, watermark, ', '.join(
                     '%s %s' % (t, a[0] if a else 'dropped')
                     for t, a in sorted(plan.items())) or 'nothing to do')
        return True

    def _await_buffered(self, floor, watermark):
        """Wait until seqs floor+1..watermark are buffered (_lock held).

        Woken by each delta buffered (``_arrived``); gives up after
        ``gap_timeout`` or when the reconciler stops.
        """
        missing = [seq for seq in range(floor + 1, watermark + 1)
                   if seq not in self._buffer]
        deadline = time.monotonic() + self._gaps.gap_timeout
        while missing:
            left = deadline - time.monotonic()
            if left <= 0 or self._stopping.is_set():
                return False
            self._arrived.wait(left)
            missing = [seq for seq in missing if seq not in self._buffer]
        return True

    def _install_plan(self, watermark, ctx, stored, plan, invalid=None):
        """Apply a migration plan; caller holds _lock.

        ``invalid``: ``{table: (seq, cause)}`` of the invalidations among
        the buffered transactions the plan covers. A table a step
        reshaped in place (``replace``) is re-read after it: its rows
        at the watermark are not known exactly.
        """
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
        self._gaps.last_seen = self._clock()
        self.last_error = None
        self.counters['migrations'] += 1
        for table, (seq, cause) in sorted((invalid or {}).items()):
            action = plan.get(table)
            if action is not None and action[0] == 'replace':
                self._invalidate(table, cause, seq)
        self._dispatch(events)
        self._set_live()
        try:
            self._drain(self._clock())
        except common.StateUnavailable:
            pass  # stays buffered; poll() retries
