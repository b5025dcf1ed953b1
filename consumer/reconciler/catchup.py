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

"""The loaded rows of a resume, kept out of collections while catching up.

A restart loads every mirrored row from the state store (in a paused
block, :mod:`consumer.gc_pause`) and then applies the deltas that waited
in the broker meanwhile. Python's collector would soon run a full
collection over all the loaded rows in the middle of that catch-up (it
counts them as new long-lived objects against the heap of its last full
collection). :class:`CatchUpHold` holds them (:func:`gc_pause.hold`, a
freeze) until the stream has caught up, then releases them (unfreeze):
they are collected normally afterwards, cycles included.

Caught up means: a heartbeat (published by an idle relay) at or behind
the applied position after at least one delta was applied since the
resume (heartbeats queued while the consumer was down, ahead of the
waiting deltas, do not count). Whatever happens, the hold ends
``[consumer] inactivity_timeout`` after the resume at the latest (an
idle relay sends heartbeats more often than that), and when the stream
stops.

Not thread-safe: the reconciler calls it under its lock.
"""

from consumer import gc_pause


class CatchUpHold(object):
    """One resume's hold on the collector.

    :param limit: seconds after which the hold ends anyway.
    """

    def __init__(self, limit):
        self._limit = limit
        self._held = False
        self._since = None
        self._seq = None

    @property
    def held(self):
        return self._held

    def hold(self, now):
        """Hold (inside the load's paused block); True when held."""
        self.release()
        self._held = gc_pause.hold()
        self._since = now
        self._seq = None
        return self._held

    def resumed_at(self, seq):
        """The position the resume starts from (after :meth:`hold`)."""
        self._seq = seq

    def heartbeat(self, seq, applied):
        """A heartbeat at ``seq`` was taken with ``applied``."""
        if self._held and self._seq is not None and applied is not None \
                and applied > self._seq and seq <= applied:
            self.release()

    def check(self, now):
        """End the hold once its time limit has passed."""
        if self._held and now - self._since >= self._limit:
            self.release()

    def release(self):
        """End the hold now (idempotent)."""
        if self._held:
            self._held = False
            gc_pause.release()
