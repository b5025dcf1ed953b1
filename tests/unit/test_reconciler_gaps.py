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

"""consumer.reconciler.gaps: the clocks that call for a resync."""

from consumer.reconciler import gaps
from tests import base


class TestGapClocks(base.TestCase):

    def setUp(self):
        super().setUp()
        self.clocks = gaps.GapClocks(gap_timeout=2.0, inactivity=30.0)

    def test_nothing_armed_nothing_expires(self):
        """Fresh clocks are not armed and never expire."""
        self.assertFalse(self.clocks.armed())
        self.assertIsNone(self.clocks.expired(10 ** 6))

    def test_gap_expires_after_gap_timeout(self):
        """A drain that leaves entries buffered starts the gap clock."""
        self.clocks.drained(True, False, 5, now=100.0)
        self.assertTrue(self.clocks.armed())
        self.assertIsNone(self.clocks.expired(101.9))
        self.assertEqual(gaps.GAP, self.clocks.expired(102.0))

    def test_gap_clock_restarts_on_progress_only(self):
        """Only a drain that applied something restarts the gap clock."""
        self.clocks.drained(True, False, 5, now=100.0)
        self.clocks.drained(True, False, 5, now=101.0)
        self.assertEqual(100.0, self.clocks.gap_since)
        self.clocks.drained(True, True, 6, now=101.5)
        self.assertEqual(101.5, self.clocks.gap_since)

    def test_empty_buffer_stops_the_gap_clock(self):
        """A drain that empties the buffer stops the gap clock."""
        self.clocks.drained(True, False, 5, now=100.0)
        self.clocks.drained(False, True, 9, now=100.5)
        self.assertIsNone(self.clocks.gap_since)
        self.assertIsNone(self.clocks.expired(1000.0))

    def test_heartbeat_ahead_keeps_its_first_time(self):
        """A later heartbeat further ahead keeps the clock's start."""
        self.clocks.heartbeat(10, 5, now=100.0)
        self.clocks.heartbeat(12, 5, now=101.0)
        self.assertEqual((12, 100.0), self.clocks.ahead)
        self.assertEqual(gaps.AHEAD, self.clocks.expired(102.0))

    def test_drain_reaching_the_heartbeat_stops_its_clock(self):
        """Applying up to the announced seq clears the ahead clock."""
        self.clocks.heartbeat(10, 5, now=100.0)
        self.clocks.drained(False, True, 10, now=100.5)
        self.assertIsNone(self.clocks.ahead)
        self.assertFalse(self.clocks.armed())

    def test_heartbeat_behind_expires_as_rewound(self):
        """A heartbeat behind the applied seq starts the behind clock."""
        self.clocks.heartbeat(3, 5, now=100.0)
        self.clocks.heartbeat(2, 5, now=101.0)
        self.assertEqual((3, 100.0), self.clocks.behind)
        self.assertEqual(gaps.BEHIND, self.clocks.expired(102.0))

    def test_heartbeat_at_applied_stops_both_clocks(self):
        """A heartbeat at the applied seq clears ahead and behind."""
        self.clocks.heartbeat(3, 5, now=100.0)
        self.clocks.heartbeat(5, 5, now=100.1)
        self.assertFalse(self.clocks.armed())
        self.clocks.heartbeat(9, 5, now=100.2)
        self.clocks.heartbeat(5, 5, now=100.3)
        self.assertFalse(self.clocks.armed())

    def test_silence_expires_after_inactivity(self):
        """No message for the inactivity timeout expires SILENT."""
        self.clocks.last_seen = 100.0
        self.assertIsNone(self.clocks.expired(129.9))
        self.assertEqual(gaps.SILENT, self.clocks.expired(130.0))
        self.assertFalse(self.clocks.armed())

    def test_gap_wins_over_the_other_clocks(self):
        """Expired together: gap before ahead before behind."""
        self.clocks.last_seen = 0.0
        self.clocks.behind = (1, 0.0)
        self.assertEqual(gaps.BEHIND, self.clocks.expired(100.0))
        self.clocks.ahead = (9, 0.0)
        self.assertEqual(gaps.AHEAD, self.clocks.expired(100.0))
        self.clocks.gap_since = 0.0
        self.assertEqual(gaps.GAP, self.clocks.expired(100.0))

    def test_reset_stops_gap_and_heartbeat_clocks(self):
        """reset() disarms everything but keeps the last message time."""
        self.clocks.drained(True, False, 5, now=100.0)
        self.clocks.heartbeat(9, 5, now=100.0)
        self.clocks.last_seen = 100.0
        self.clocks.reset()
        self.assertFalse(self.clocks.armed())
        self.assertEqual(100.0, self.clocks.last_seen)
