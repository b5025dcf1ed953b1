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

"""Unit tests of the reconciler's parts: buffer, epochs, timers, drift."""

import math
import random

from consumer import cache as cache_mod
from consumer.reconciler import buffer
from consumer.reconciler import drift
from consumer.reconciler import epochs
from consumer.reconciler import timers
from oslo_publish import wire
from tests import base


def _pending(seq, arrival=0):
    return buffer.Pending(seq, None, (), {}, arrival, None)


class TestBuffer(base.TestCase):

    def test_take_run_stops_at_the_first_gap(self):
        """Only the contiguous entries after applied are taken, in order."""
        buf = {s: _pending(s) for s in (5, 6, 7, 9)}
        run = buffer.take_run(buf, 4, 100)
        self.assertEqual([5, 6, 7], [p.seq for p in run])
        self.assertEqual([9], list(buf))

    def test_take_run_respects_the_limit(self):
        """At most limit entries are taken; the rest stay buffered."""
        buf = {s: _pending(s) for s in range(1, 11)}
        self.assertEqual(3, len(buffer.take_run(buf, 0, 3)))
        self.assertEqual(list(range(4, 11)), sorted(buf))

    def test_drop_applied_counts_what_it_removes(self):
        """Entries at or below applied are removed and counted."""
        buf = {s: _pending(s) for s in (1, 2, 3, 8)}
        self.assertEqual(3, buffer.drop_applied(buf, 3))
        self.assertEqual([8], list(buf))

    def test_drop_impossible_keeps_later_arrivals(self):
        """Only early arrivals numbered beyond the watermark are dropped."""
        buf = {11: _pending(11, arrival=1), 12: _pending(12, arrival=5),
               9: _pending(9, arrival=1)}
        self.assertEqual([11], buffer.drop_impossible(buf, 10, 3))
        self.assertEqual([9, 12], sorted(buf))


class TestEpochTracker(base.TestCase):

    def test_none_counts_as_the_current_epoch(self):
        """A 1.0 message (no epoch) is always SAME."""
        tracker = epochs.EpochTracker('a')
        self.assertEqual(epochs.SAME, tracker.classify(None, True))
        self.assertEqual('a', tracker.current)

    def test_first_epoch_is_adopted(self):
        """Unknown epoch: the first seen is adopted, current once synced."""
        before = epochs.EpochTracker()
        self.assertEqual(epochs.ADOPT, before.classify('a', False))
        self.assertEqual(('a', None), (before.coming, before.current))
        after = epochs.EpochTracker()
        self.assertEqual(epochs.ADOPT, after.classify('a', True))
        self.assertEqual((None, 'a'), (after.coming, after.current))

    def test_change_then_stale_then_installed(self):
        """A new epoch is CHANGED once; the old one is STALE from then on."""
        tracker = epochs.EpochTracker('a')
        self.assertEqual(epochs.CHANGED, tracker.classify('b', True))
        self.assertEqual(epochs.SAME, tracker.classify('b', True))
        self.assertEqual(epochs.STALE, tracker.classify('a', True))
        self.assertEqual('b', tracker.for_install(None))
        tracker.installed('b')
        self.assertEqual(('b', None), (tracker.current, tracker.coming))
        self.assertEqual(epochs.STALE, tracker.classify('a', True))
        self.assertEqual(epochs.CHANGED, tracker.classify('c', True))

    def test_snapshot_epoch_wins(self):
        """The epoch a snapshot carries is the one installed."""
        tracker = epochs.EpochTracker('a')
        tracker.classify('b', True)
        self.assertEqual('c', tracker.for_install('c'))


class TestPacer(base.TestCase):

    def test_backoff_doubles_up_to_the_maximum(self):
        """Failures double the delay, jittered within [d/2, d], capped."""
        pacer = timers.Pacer(1.0, 5.0, 10, random.Random(3))
        self.assertLessEqual(pacer.backoff(), 1.0)
        for failures, cap in ((1, 1.0), (2, 2.0), (3, 4.0), (6, 5.0)):
            pacer.failures = failures
            delay = pacer.backoff()
            self.assertTrue(cap / 2 <= delay <= cap, (failures, delay))

    def test_rate_limit_defers_past_the_window(self):
        """Beyond per_minute starts, the next waits for the oldest to age."""
        pacer = timers.Pacer(0.0, 0.0, 2, random.Random(1))
        pacer.started(100.0)
        pacer.started(110.0)
        self.assertEqual(160.0, pacer.allowed_at(120.0))
        self.assertEqual(161.0, pacer.allowed_at(161.0))
        self.assertEqual(161.0, pacer.next_at(161.0))


class TestDrift(base.TestCase):

    def test_counts_rows_that_differ_after_in_flight_changes(self):
        """In-flight changes are applied before comparing; NaN equals NaN."""
        cache = cache_mod.Cache()
        cache.replace_table('t', {(1,): {'id': 1, 'v': 'a'},
                                  (2,): {'id': 2, 'v': math.nan},
                                  (3,): {'id': 3, 'v': 'c'}})
        in_flight = [_pending(1)._replace(changes=(
            wire.Change('t', wire.UPDATE, (1,), {'id': 1, 'v': 'b'}, None,
                        ()),
            wire.invalidation('t', 'test')))]
        fresh = {(1,): {'id': 1, 'v': 'b'}, (2,): {'id': 2, 'v': math.nan},
                 (3,): {'id': 3, 'v': 'changed'}, (4,): {'id': 4, 'v': 'd'}}
        self.assertEqual({'t': 2}, drift.count_drift(
            cache.view(), in_flight, ['t'], {'t': fresh}))

    def test_row_hash_is_stable(self):
        """Equal rows hash equal whatever the key order; None is None."""
        self.assertEqual(drift.row_hash({'a': 1, 'b': 2}),
                         drift.row_hash({'b': 2, 'a': 1}))
        self.assertIsNone(drift.row_hash(None))
