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

"""consumer.gc_pause: nested and concurrent pauses of the collector."""

import gc
import threading
import weakref

from consumer import gc_pause
from tests import base


class TestPaused(base.TestCase):

    def setUp(self):
        super().setUp()
        self.addCleanup(gc.enable if gc.isenabled() else gc.disable)
        gc.enable()

    def test_nested_blocks_restore_on_the_last_exit(self):
        """The collector runs again only when the outermost block ends."""
        with gc_pause.paused():
            self.assertFalse(gc.isenabled())
            with gc_pause.paused():
                self.assertEqual(2, gc_pause.depth())
            self.assertFalse(gc.isenabled())
        self.assertTrue(gc.isenabled())
        self.assertEqual(0, gc_pause.depth())

    def test_failure_inside_still_restores(self):
        """An exception leaving the block re-enables the collector."""
        def fail():
            with gc_pause.paused():
                raise ValueError('boom')
        self.assertRaises(ValueError, fail)
        self.assertTrue(gc.isenabled())

    def test_collector_disabled_by_the_application_stays_disabled(self):
        """A pause never enables a collector that was off before."""
        gc.disable()
        with gc_pause.paused():
            pass
        self.assertFalse(gc.isenabled())

    def test_overlapping_threads(self):
        """Two threads' blocks overlap: enabled after the later exit."""
        entered = threading.Event()
        release = threading.Event()

        def other():
            with gc_pause.paused():
                entered.set()
                release.wait(30)
        thread = threading.Thread(target=other)
        thread.start()
        self.assertTrue(entered.wait(30))
        with gc_pause.paused():
            pass
        self.assertFalse(gc.isenabled())  # the other block still runs
        release.set()
        thread.join(30)
        self.assertTrue(gc.isenabled())


class TestFreezeSurvivors(base.TestCase):

    def setUp(self):
        super().setUp()
        self.addCleanup(gc.enable if gc.isenabled() else gc.disable)
        self.addCleanup(gc.unfreeze)
        gc.enable()

    def test_live_objects_leave_the_collected_generations(self):
        """What is alive is frozen; a later full collection skips it."""
        rows = [{'id': i} for i in range(1000)]
        frozen = gc_pause.freeze_survivors()
        self.assertGreaterEqual(frozen, len(rows))
        tracked = set(map(id, gc.get_objects()))
        self.assertNotIn(id(rows[0]), tracked)

    def test_young_garbage_cycles_are_collected_not_frozen(self):
        """A cycle already unreachable is freed before the freeze."""
        class Node(object):
            pass
        freed = threading.Event()
        node = Node()
        node.self = node
        weakref.finalize(node, freed.set)
        del node
        gc_pause.freeze_survivors()
        self.assertTrue(freed.is_set())

    def test_skipped_while_a_pause_runs(self):
        """No freeze inside a paused block (its objects are not settled)."""
        before = gc.get_freeze_count()
        with gc_pause.paused():
            self.assertEqual(0, gc_pause.freeze_survivors())
        self.assertEqual(before, gc.get_freeze_count())

    def test_skipped_when_the_application_disabled_the_collector(self):
        """An application that manages the collector keeps it as it is."""
        gc.disable()
        before = gc.get_freeze_count()
        self.assertEqual(0, gc_pause.freeze_survivors())
        self.assertEqual(before, gc.get_freeze_count())


class TestPromoteYoung(base.TestCase):

    def setUp(self):
        super().setUp()
        self.addCleanup(gc.enable if gc.isenabled() else gc.disable)
        self.addCleanup(gc.unfreeze)
        gc.enable()
        gc.collect()

    @staticmethod
    def _in_generation(obj, generation):
        return any(o is obj for o in gc.get_objects(generation=generation))

    def test_paused_load_moves_to_the_oldest_generation(self):
        """Objects made in the pause skip the young collections."""
        with gc_pause.paused():
            rows = [[i] for i in range(1000)]
            self.assertTrue(self._in_generation(rows[0], 0))
            moved = gc_pause.promote_young()
        self.assertGreaterEqual(moved, len(rows))
        self.assertFalse(self._in_generation(rows[0], 0))
        self.assertTrue(self._in_generation(rows[0], 2))
        self.assertEqual(0, gc.get_freeze_count())

    def test_promoted_cycles_are_still_collected(self):
        """Unlike a freeze, a full collection still frees their cycles."""
        class Node(object):
            pass
        freed = threading.Event()
        with gc_pause.paused():
            node = Node()
            node.self = node
            weakref.finalize(node, freed.set)
            gc_pause.promote_young()
        del node
        self.assertFalse(freed.is_set())
        gc.collect()
        self.assertTrue(freed.is_set())

    def test_skipped_when_the_application_froze_objects(self):
        """Objects the application froze itself stay frozen."""
        keep = [[i] for i in range(10)]
        gc.freeze()
        before = gc.get_freeze_count()
        self.assertGreaterEqual(before, len(keep))
        with gc_pause.paused():
            self.assertEqual(0, gc_pause.promote_young())
        self.assertEqual(before, gc.get_freeze_count())

    def test_skipped_when_the_application_disabled_the_collector(self):
        """A collector turned off before the pause is left alone."""
        gc.disable()
        with gc_pause.paused():
            rows = [[i] for i in range(10)]
            self.assertEqual(0, gc_pause.promote_young())
        self.assertTrue(self._in_generation(rows[0], 0))
