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


"""Pacing: batch while busy, by the cost of the work, not a window.

A publishing thread (the relay, direct delivery) runs a cycle as soon as
work arrives while it is idle (blocked, waiting for work). When work
arrived while a cycle ran (it is busy), a :class:`Pacer` spaces its
cycles so that the thread spends at most ``share`` of one CPU: after a
cycle that cost ``c`` seconds of the thread's CPU time, the next starts
no sooner than ``c / share`` seconds after it began. Everything
committed in between goes into that next cycle. The added wait is
proportional to the work itself (a few milliseconds per cycle); the
writers keep the rest of the CPU.
"""

import time


class Pacer(object):
    """Spaces busy cycles by their cost.

    :param share: the largest share of one CPU (0 < share <= 1) the
        thread spends while busy; 1 means no pacing.
    """

    def __init__(self, share):
        self._share = share
        self._began = 0.0
        self._cpu = 0.0
        self._next = 0.0

    def begin(self):
        """A cycle begins now."""
        self._began = time.monotonic()
        self._cpu = time.thread_time()

    def end(self, worked):
        """The cycle ended; ``worked``: it published anything."""
        if not worked or self._share >= 1.0:
            self._next = 0.0
            return
        cost = time.thread_time() - self._cpu
        self._next = self._began + cost / self._share

    @property
    def next_start(self):
        """The monotonic time before which no busy cycle begins."""
        return self._next

    def delay(self):
        """Seconds to wait before the next cycle (0 when idle long enough)."""
        return max(0.0, self._next - time.monotonic())
