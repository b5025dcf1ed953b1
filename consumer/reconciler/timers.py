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

"""Resync pacing: jittered exponential backoff and a per-minute limit."""

import collections

#: Seconds over which resyncs_per_minute is counted.
WINDOW = 60.0


class Pacer(object):
    """When the next resync of one stream may start.

    :param backoff_min: first delay (seconds); the first attempt waits a
        random fraction of it.
    :param backoff_max: longest delay.
    :param per_minute: most resyncs started per minute.
    :param rng: a ``random.Random``.

    Not thread-safe: the reconciler calls it under its lock.
    """

    def __init__(self, backoff_min, backoff_max, per_minute, rng):
        self.backoff_min = backoff_min
        self.backoff_max = max(backoff_max, backoff_min)
        self.per_minute = per_minute
        self._rng = rng
        #: Consecutive failed resyncs (drives the backoff).
        self.failures = 0
        #: Start times of recent resyncs.
        self._starts = collections.deque()

    def backoff(self):
        """Delay before the next attempt, given the failures so far."""
        if self.failures == 0:
            return self._rng.uniform(0.0, self.backoff_min)
        delay = min(self.backoff_max,
                    self.backoff_min * (2 ** (self.failures - 1)))
        return delay * self._rng.uniform(0.5, 1.0)

    def started(self, now):
        """Record that a resync started at ``now``."""
        self._starts.append(now)

    def allowed_at(self, now):
        """Earliest time a resync may start under the rate limit."""
        while self._starts and now - self._starts[0] >= WINDOW:
            self._starts.popleft()
        if len(self._starts) < self.per_minute:
            return now
        return self._starts[0] + WINDOW

    def next_at(self, now):
        """Start time of a resync planned at ``now``."""
        return max(now + self.backoff(), self.allowed_at(now))
