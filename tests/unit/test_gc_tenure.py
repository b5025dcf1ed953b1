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

"""consumer.gc_tenure: survivors of full collections frozen, rescans."""

import gc
from unittest import mock
import weakref

from consumer import gc_tenure
from tests import base


class _Node(object):
    """A container that can be part of a cycle and weakly referenced."""

    def __init__(self):
        self.other = None


def _cycle():
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return a


class TestTenure(base.TestCase):

    def setUp(self):
        super().setUp()
        self.addCleanup(gc.enable if gc.isenabled() else gc.disable)
        gc.enable()
        gc.unfreeze()
        self.addCleanup(gc.unfreeze)
        gc_tenure.install()
        self.addCleanup(gc_tenure.uninstall)

    def test_full_collection_freezes_its_survivors(self):
        """What survives a full collection leaves the collected generations."""
        survivor = _Node()
        gc.collect()
        self.assertGreater(gc.get_freeze_count(), 0)
        self.assertFalse(any(o is survivor for o in gc.get_objects(2)))

    def test_young_collection_freezes_nothing(self):
        """Only full collections tenure their survivors."""
        gc.collect(0)
        gc.collect(1)
        self.assertEqual(0, gc.get_freeze_count())

    def test_cycle_among_frozen_objects_is_collected_after_a_rescan(self):
        """A frozen garbage cycle is freed by the rescan growth makes due."""
        node = _cycle()
        ref = weakref.ref(node)
        with mock.patch.object(gc_tenure, 'GROWTH', 0.0), \
                mock.patch.object(gc_tenure, 'MIN_RESCAN', 0):
            gc.collect()  # frozen, base = the frozen count
            del node
            gc.collect()  # still frozen: not collected, rescan now due
            self.assertIsNotNone(ref())
            self.assertEqual(0, gc.get_freeze_count())
            gc.collect()  # scans everything
        self.assertIsNone(ref())
        self.assertGreater(gc.get_freeze_count(), 0)

    def test_no_rescan_before_the_heap_doubled(self):
        """Below the growth bound full collections keep what they froze."""
        gc.collect()
        self.assertGreater(gc.get_freeze_count(), 0)
        gc.collect()
        self.assertGreater(gc.get_freeze_count(), 0)
        self.assertEqual({'freezes': 2, 'rescans': 0}, gc_tenure.stats())

    def test_last_uninstall_unfreezes_and_removes_the_hook(self):
        """Installs are counted; the last uninstall gives everything back."""
        gc_tenure.install()
        gc.collect()
        gc_tenure.uninstall()
        self.assertTrue(gc_tenure.installed())
        self.assertGreater(gc.get_freeze_count(), 0)
        gc_tenure.uninstall()
        self.assertFalse(gc_tenure.installed())
        self.assertEqual(0, gc.get_freeze_count())
        gc.collect()
        self.assertEqual(0, gc.get_freeze_count())
        gc_tenure.install()  # for the cleanup's uninstall
