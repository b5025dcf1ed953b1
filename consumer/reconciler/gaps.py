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

"""The clocks of the conditions that call for a resync.

A stream resynchronises when, for ``gap_timeout``, a sequence number is
missing (the reorder buffer holds later ones), a heartbeat announces a
seq beyond the applied one, or a heartbeat of the same epoch stays
behind it (the host database was rewound); or when nothing at all was
heard for ``inactivity_timeout``. :class:`GapClocks` keeps those clocks;
the reconciler (:mod:`.watch`) asks :meth:`GapClocks.expired` which one
ran out and plans the resync.
"""

#: A seq is missing (``gap_since``).
GAP = 'gap'
#: A heartbeat is ahead of the applied position (``ahead``).
AHEAD = 'ahead'
#: A heartbeat is behind the applied position (``behind``).
BEHIND = 'behind'
#: Nothing was heard (``last_seen``).
SILENT = 'silent'


class GapClocks(object):
    """Start times of the gap, heartbeat and inactivity clocks.

    :param gap_timeout: seconds a gap or a heartbeat mismatch may last.
    :param inactivity: seconds the stream may stay silent.

    Not thread-safe: the reconciler calls it under its lock. Times are
    of the reconciler's monotonic clock.
    """

    def __init__(self, gap_timeout, inactivity):
        self.gap_timeout = gap_timeout
        self.inactivity = inactivity
        #: Time the first missing seq started to be missed.
        self.gap_since = None
        #: (seq, since) of a heartbeat ahead of the applied position.
        self.ahead = None
        #: (seq, since) of a same-epoch heartbeat behind the applied
        #: position: the host database was rewound (restored from a
        #: dump).
        self.behind = None
        #: Time of the last message received.
        self.last_seen = None

    def heartbeat(self, seq, applied, now):
        """A heartbeat announced ``seq`` while ``applied`` is applied."""
        if seq > applied:
            if self.ahead is None or self.ahead[0] < seq:
                since = self.ahead[1] if self.ahead else now
                self.ahead = (seq, since)
            self.behind = None
        elif seq < applied:
            # Rewound host, or a heartbeat overtaken by later deltas: the
            # latter is cleared by the next delta applied or heartbeat.
            self.ahead = None
            if self.behind is None:
                self.behind = (seq, now)
        else:
            self.ahead = None
            self.behind = None

    def drained(self, waiting, progressed, applied, now):
        """A drain ended at ``applied``.

        :param waiting: transactions are still buffered (a seq is
            missing before them).
        :param progressed: the drain applied something.
        """
        if waiting:
            # A gap's clock starts when its first missing seq is awaited.
            if self.gap_since is None or progressed:
                self.gap_since = now
        else:
            self.gap_since = None
        if self.ahead is not None and self.ahead[0] <= applied:
            self.ahead = None

    def reset(self):
        """Stop the gap and heartbeat clocks (a snapshot is coming)."""
        self.gap_since = None
        self.ahead = None
        self.behind = None

    def armed(self):
        """True while a gap or heartbeat clock runs."""
        return self.gap_since is not None or self.ahead is not None or \
            self.behind is not None

    def expired(self, now):
        """The first clock that ran out (GAP .. SILENT), or None."""
        if self.gap_since is not None and \
                now - self.gap_since >= self.gap_timeout:
            return GAP
        if self.ahead is not None and \
                now - self.ahead[1] >= self.gap_timeout:
            return AHEAD
        if self.behind is not None and \
                now - self.behind[1] >= self.gap_timeout:
            return BEHIND
        if self.last_seen is not None and \
                now - self.last_seen >= self.inactivity:
            return SILENT
        return None
