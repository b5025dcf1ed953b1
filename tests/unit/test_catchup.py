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

"""consumer.reconciler.catchup: a resume's hold on the collector."""

import gc

import fixtures

from consumer import gc_pause
from consumer.reconciler import catchup
from tests import base


class TestCatchUpHold(base.TestCase):

    def setUp(self):
        super().setUp()
        self.calls = []
        self.useFixture(fixtures.MonkeyPatch(
            'consumer.gc_pause.hold',
            lambda: self.calls.append('hold') or True))
        self.useFixture(fixtures.MonkeyPatch(
            'consumer.gc_pause.release',
            lambda: self.calls.append('release')))
        self.hold = catchup.CatchUpHold(limit=30.0)
        self.assertTrue(self.hold.hold(100.0))
        self.hold.resumed_at(10)

    def test_heartbeat_after_an_applied_delta_releases(self):
        """Caught up: a heartbeat at the position a delta moved to."""
        self.hold.heartbeat(10, 10)  # queued before the waiting deltas
        self.assertTrue(self.hold.held)
        self.hold.heartbeat(12, 11)  # ahead: more deltas to come
        self.assertTrue(self.hold.held)
        self.hold.heartbeat(12, 12)
        self.assertFalse(self.hold.held)
        self.assertEqual(['hold', 'release'], self.calls)

    def test_time_limit_releases(self):
        """Never caught up: released after the limit anyway."""
        self.hold.check(129.0)
        self.assertTrue(self.hold.held)
        self.hold.check(130.0)
        self.assertFalse(self.hold.held)
        self.hold.check(200.0)
        self.hold.release()
        self.assertEqual(['hold', 'release'], self.calls)  # only once

    def test_a_new_hold_ends_the_previous_one(self):
        """A second resume of the stream does not stack holds."""
        self.hold.hold(200.0)
        self.assertEqual(['hold', 'release', 'hold'], self.calls)
        self.hold.heartbeat(10, 11)  # no position yet for this resume
        self.assertTrue(self.hold.held)


class TestCollectorHold(base.TestCase):

    def setUp(self):
        super().setUp()
        self.addCleanup(gc.enable if gc.isenabled() else gc.disable)
        self.addCleanup(gc.unfreeze)
        gc.enable()
        gc.unfreeze()

    def test_held_until_the_last_release(self):
        """Frozen while held (counted), back to the oldest generation."""
        with gc_pause.paused():
            rows = [[i] for i in range(100)]
            self.assertTrue(gc_pause.hold())
            self.assertTrue(gc_pause.hold())
        self.assertGreaterEqual(gc.get_freeze_count(), len(rows))
        gc_pause.release()
        self.assertEqual(1, gc_pause.holds())
        self.assertGreaterEqual(gc.get_freeze_count(), len(rows))
        gc_pause.release()
        self.assertEqual(0, gc_pause.holds())
        self.assertEqual(0, gc.get_freeze_count())
        self.assertTrue(any(o is rows[0] for o in
                            gc.get_objects(generation=2)))

    def test_application_frozen_objects_are_not_released(self):
        """A permanent generation filled by others: no hold at all."""
        keep = [[i] for i in range(10)]
        gc.freeze()
        before = gc.get_freeze_count()
        self.assertGreaterEqual(before, len(keep))
        self.assertFalse(gc_pause.hold())
        gc_pause.release()
        self.assertEqual(before, gc.get_freeze_count())

    def test_frozen_by_others_meanwhile_stays_frozen(self):
        """A freeze by someone else during the hold is not undone."""
        self.assertTrue(gc_pause.hold())
        self.addCleanup(lambda: gc_pause.holds() and gc_pause.release())
        more = [[i] for i in range(10)]
        gc.freeze()
        frozen = gc.get_freeze_count()
        gc_pause.release()
        self.assertEqual(frozen, gc.get_freeze_count())
        self.assertIsNotNone(more)

    def test_disabled_collector_is_not_held(self):
        """An application that turned the collector off keeps it so."""
        gc.disable()
        self.assertFalse(gc_pause.hold())
        self.assertEqual(0, gc_pause.holds())
