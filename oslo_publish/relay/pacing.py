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
work arrives while it is idle (blocked, waiting for work) and the
service's writers are idle too. It is *busy* when work arrived while a
cycle ran, or when a transaction of the service is in flight
(:class:`Activity`): then a :class:`Pacer` spaces its cycles so that the
thread spends at most ``share`` of one CPU: after a cycle that cost
``c`` seconds of the thread's CPU time, the next starts no sooner than
``c / share`` seconds after it began, or as soon as every transaction in
flight has ended, whichever comes first. Everything committed in between
goes into that next cycle. The added wait is proportional to the work
itself (a few milliseconds per cycle) and only taken while the writers
run; the writers keep the rest of the CPU.
"""

import math
import os
import threading
import time
import weakref

#: Writers are *saturating* when at least one transaction was in flight
#: this share of the recent time (:meth:`Activity.utilization`): only
#: then does a cycle wait for them. Writers that leave gaps (a service
#: answering requests as they come) get their commits published at once.
SATURATED = 0.5

#: Time constant in seconds of :meth:`Activity.utilization` (an
#: exponentially decaying average: a writer that starts running without
#: gaps saturates after about 0.7 of it).
WINDOW = 0.02

#: Writers are *back to back* when they are saturating and the idle
#: gaps between their transactions (an exponentially weighted average,
#: :meth:`Activity.gap`) are shorter than this many seconds: too short
#: for a publishing cycle (a few database and broker round trips) to run
#: in between without competing with them.
BACK_TO_BACK_GAP = 0.001

#: Weight of the newest gap in :meth:`Activity.gap`.
GAP_WEIGHT = 0.2

#: The longest gap :meth:`Activity.gap` averages (seconds): longer ones
#: count as this much.
GAP_CLIP = 4 * BACK_TO_BACK_GAP


class Activity(object):
    """The service's transactions in flight in this process.

    The capture calls :meth:`begin` when a session of its target begins a
    (root) transaction and :meth:`end` when it ended. A transaction that
    is never ended (its session dropped without ``close()``) stops
    counting when it is garbage collected. Lock-free (a waiter checks
    again after each wake-up), and made anew in a forked child.
    """

    def __init__(self):
        self._reset()
        ref = weakref.ref(self)

        def after_fork():
            me = ref()
            if me is not None:
                me._reset()
        os.register_at_fork(after_in_child=after_fork)

    def _reset(self):
        self._running = weakref.WeakSet()
        self._idle = threading.Event()
        self._idle.set()
        # The share of the recent time with a transaction in flight: an
        # exponentially decaying average, brought up to date at each
        # begin, end and query (approximate under races, never wrong by
        # more than one period).
        self._share = 0.0
        self._since = time.monotonic()
        self._busy = False
        # The average idle gap between transactions, and when the last
        # one ended (None: none yet).
        self._gap = float('inf')
        self._ended = None

    def _update(self, now):
        elapsed = now - self._since
        if elapsed > 0:
            keep = math.exp(-elapsed / WINDOW)
            share = self._share * keep
            if self._busy:
                share += 1.0 - keep
            self._share = share
            self._since = now

    def begin(self, transaction):
        if not self._running:
            now = time.monotonic()
            self._update(now)
            self._busy = True
            ended = self._ended
            if ended is not None:
                # A long pause counts as GAP_CLIP: writers resuming
                # back to back are recognised again after a transaction.
                gap = min(now - ended, GAP_CLIP)
                previous = self._gap
                self._gap = (gap if previous == float('inf') else
                             previous + GAP_WEIGHT * (gap - previous))
        self._running.add(transaction)
        if self._idle.is_set():
            self._idle.clear()

    def end(self, transaction):
        running = self._running
        running.discard(transaction)
        if not running:
            now = time.monotonic()
            self._update(now)
            self._busy = False
            self._ended = now
            self._idle.set()

    def utilization(self):
        """Share of the recent time with a transaction in flight (0-1).

        An exponentially decaying average with time constant
        :data:`WINDOW`.
        """
        self._update(time.monotonic())
        return self._share

    def saturated(self):
        """True when writers run now and ran most of the recent time."""
        return bool(self._running) and self.utilization() >= SATURATED

    def gap(self):
        """Average idle gap in seconds between transactions (inf: none).

        An exponentially weighted average (weight :data:`GAP_WEIGHT` of
        the newest) of the time from the end of a transaction to the
        begin of the next one, when none was in flight in between, each
        counted up to :data:`GAP_CLIP`.
        """
        return self._gap

    def back_to_back(self):
        """True when saturating writers leave no room between transactions.

        A transaction in flight at least :data:`SATURATED` of the recent
        time, the average gap between transactions (:meth:`gap`) below
        :data:`BACK_TO_BACK_GAP`, and one in flight now or the current
        gap still shorter than that (writers that stopped are not
        waited for).
        """
        if self._gap >= BACK_TO_BACK_GAP:
            return False
        ended = self._ended
        if not self._running and ended is not None and \
                time.monotonic() - ended >= BACK_TO_BACK_GAP:
            return False
        return self.utilization() >= SATURATED

    @property
    def active(self):
        """True while a transaction is in flight."""
        return bool(self._running)

    def wait_idle(self, timeout):
        """Wait up to ``timeout`` seconds for no transaction in flight.

        :returns: True when none is in flight.
        """
        if not self._running:
            return True
        if timeout <= 0:
            return False
        self._idle.wait(timeout)
        return not self._running


class Pacer(object):
    """Spaces busy cycles by their cost.

    :param share: the largest share of one CPU (0 < share <= 1) the
        thread spends while busy; 1 means no pacing.
    """

    def __init__(self, share, max_pause=0.02):
        self._share = share
        self._max_pause = max_pause
        self._began = 0.0
        self._began_cpu = 0.0
        self._next = 0.0

    def begin(self):
        """A cycle begins now (in the thread that runs it)."""
        self._began = time.monotonic()
        self._began_cpu = time.thread_time()

    def end(self, worked):
        """The cycle ended; ``worked``: it published anything.

        Called in the thread that called :meth:`begin`: the cost is that
        thread's CPU time since (what the cycle took from the writers'
        interpreter and cores); its waits for the database and the broker
        are not counted.
        """
        if not worked or self._share >= 1.0:
            self._next = 0.0
            return
        cost = max(0.0, time.thread_time() - self._began_cpu)
        elapsed = time.monotonic() - self._began
        self._next = self._began + min(cost / self._share,
                                       elapsed + self._max_pause)

    @property
    def next_start(self):
        """The monotonic time before which no busy cycle begins."""
        return self._next

    def delay(self):
        """Seconds to wait before the next cycle (0 when idle long enough)."""
        return max(0.0, self._next - time.monotonic())

    def pause(self, busy, activity=None, stopping=None):
        """Wait before a cycle while busy; at once when nothing runs.

        :param busy: work arrived while the last cycle ran.
        :param activity: the service's :class:`Activity`, or None when
            the writers are not known (a standalone relay, wake-ups from
            other processes). Known writers: the cycle is paced while a
            transaction is in flight, until the spacing passed or every
            transaction in flight ended, and not at all while none is.
            Unknown writers: the cycle is paced when ``busy``. Known
            writers that leave gaps (in flight less than
            :data:`SATURATED` of the recent time) are not waited for.
            Known writers running back to back
            (:meth:`Activity.back_to_back`) are waited for the whole
            spacing, whether a transaction is in flight or not.
        :param stopping: a ``threading.Event`` ending the wait when set.
        :returns: True when ``stopping`` was set.
        """
        delay = self.delay()
        if delay <= 0:
            return False
        if activity is not None and not activity.back_to_back():
            if not activity.saturated():
                return False
            # A writer that begins its next transaction at once keeps
            # the cycle waiting up to the spacing.
            deadline = time.monotonic() + delay
            while not activity.wait_idle(delay):
                delay = deadline - time.monotonic()
                if delay <= 0:
                    break
            return stopping is not None and stopping.is_set()
        if activity is None and not busy:
            return False
        # Unknown busy writers, or known ones running back to back: the
        # whole spacing.
        if stopping is not None:
            return stopping.wait(delay)
        time.sleep(delay)
        return False
