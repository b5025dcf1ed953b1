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

"""Deltas waiting for their turn, woken only when it comes.

A concurrent executor hands a stream's messages to many threads, a few
places out of order; a message ahead of its turn waits (a bounded time)
until the transaction before it is applied. With one condition for all
of them, every applied run woke every waiting thread, and each took the
stream's lock just to see it was still early: a busy stream spent more
of its time in those wake-ups than in applying. Here each waiter has a
condition of its own, filed under the sequence number it waits to
follow, and an applied run wakes only the waiters it made due.

All methods are called with the reconciler's lock held (the conditions
are built on it, so waiting releases it).
"""

import threading


class Turns(object):
    """Waiters per first sequence number, on the reconciler's lock."""

    def __init__(self, lock):
        self._lock = lock
        #: {first seq: [Condition]} of the threads waiting.
        self._waiting = {}

    def __len__(self):
        return sum(len(conds) for conds in self._waiting.values())

    def wait(self, first_seq, predicate, timeout):
        """Wait until ``predicate()`` or ``timeout``; caller: the lock.

        Woken by :meth:`advance` once the applied position reaches
        ``first_seq - 1``, and by :meth:`wake_all`.
        """
        cond = threading.Condition(self._lock)
        self._waiting.setdefault(first_seq, []).append(cond)
        try:
            return cond.wait_for(predicate, timeout)
        finally:
            conds = self._waiting[first_seq]
            conds.remove(cond)
            if not conds:
                del self._waiting[first_seq]

    def advance(self, applied):
        """The stream applied up to ``applied``: wake who is now due."""
        if not self._waiting:
            return
        for seq, conds in self._waiting.items():
            if seq <= applied + 1:
                for cond in conds:
                    cond.notify()

    def wake_all(self):
        """Wake every waiter (state change: buffering, stopping)."""
        for conds in self._waiting.values():
            for cond in conds:
                cond.notify()
