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

"""Gap detection: heartbeats, timers and resync requests.

The part of :class:`~consumer.reconciler.core.Reconciler` that decides
when a stream must be resynchronised: a missing seq or a heartbeat ahead
of (or behind) the applied position for ``gap_timeout``, silence for
``inactivity_timeout``, the periodic resync; and that plans the resync
(:meth:`_request`, paced by :class:`.timers.Pacer`).
"""

from oslo_log import log

from consumer.reconciler import common
from consumer.reconciler import gaps as gaps_mod

LOG = log.getLogger(__name__)


class Watch(object):
    """Timers and resync requests (caller holds ``_lock``).

    Writes: ``_gaps`` (:class:`.gaps.GapClocks`), ``_periodic_at``,
    ``_pending``, ``_resync_at``, ``_buffering``, ``_status``.
    """

    def _on_heartbeat(self, seq, now):
        if self._buffering or self._applied is None:
            return
        self._catch_up.heartbeat(seq, self._applied)
        self._gaps.heartbeat(seq, self._applied, now)

    def _schedule_periodic(self, now):
        if self._interval > 0:
            self._periodic_at = now + self._interval * self._rng.uniform(
                0.9, 1.1)

    def _check_timers(self, now):
        self._catch_up.check(now)
        if self._status in (common.INITIAL, common.STOPPED) or \
                self._applied is None:
            return
        if not self._buffering:
            self._check_gaps(now)
        if self._pending is None and self._periodic_at is not None and \
                now >= self._periodic_at:
            self._request('periodic', now)

    def _check_gaps(self, now):
        """Request the resync an expired gap clock calls for."""
        clocks = self._gaps
        expired = clocks.expired(now)
        if expired == gaps_mod.GAP:
            missing = self._applied + 1
            LOG.warning('Stream %s: seq %d missing for %.2fs',
                        self.stream, missing, now - clocks.gap_since)
            self._request('gap', now)
        elif expired == gaps_mod.AHEAD:
            LOG.warning('Stream %s: heartbeat at seq %d ahead of '
                        'applied %d', self.stream, clocks.ahead[0],
                        self._applied)
            self._request('heartbeat', now)
        elif expired == gaps_mod.BEHIND:
            LOG.warning('Stream %s: heartbeat at seq %d behind applied '
                        '%d: the host database was rewound',
                        self.stream, clocks.behind[0], self._applied)
            clocks.behind = None
            self._request('epoch', now)
        elif expired == gaps_mod.SILENT:
            LOG.warning('Stream %s: silent for %.1fs', self.stream,
                        now - clocks.last_seen)
            self._request('inactivity', now)

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
            if not first and self._status == common.LIVE:
                self._status = common.RESYNCING
        LOG.info('Stream %s: resync (%s) planned in %.2fs', self.stream,
                 cause, self._resync_at - now)
        self._wake.set()
