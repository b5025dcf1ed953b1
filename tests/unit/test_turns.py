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

"""Targeted wake-ups: turn order in the reconciler, durability waits."""

import threading
from unittest import mock

from consumer import persister
from consumer.reconciler import turns
from tests import base


class TestTurns(base.TestCase):

    def setUp(self):
        super().setUp()
        self.lock = threading.RLock()
        self.turns = turns.Turns(self.lock)
        self.applied = 0

    def _waiter(self, seq, results):
        def run():
            with self.lock:
                results[seq] = self.turns.wait(
                    seq, lambda: seq <= self.applied + 1, 30)
        thread = threading.Thread(target=run)
        thread.start()
        return thread

    def test_advance_wakes_only_the_waiters_made_due(self):
        results = {}
        threads = [self._waiter(seq, results) for seq in (3, 5)]
        base.wait_for(lambda: len(self.turns) == 2, 10)
        conds = {seq: conds[0] for seq, conds in
                 self.turns._waiting.items()}
        with self.lock:
            self.applied = 2
            with mock.patch.object(conds[5], 'notify') as late:
                self.turns.advance(self.applied)
            self.assertEqual(0, late.call_count)
        threads[0].join(10)
        self.assertEqual({3: True}, results)
        with self.lock:
            self.applied = 4
            self.turns.advance(self.applied)
        threads[1].join(10)
        self.assertEqual({3: True, 5: True}, results)
        self.assertEqual(0, len(self.turns))

    def test_wake_all_and_timeout(self):
        results = {}
        thread = self._waiter(9, results)
        base.wait_for(lambda: len(self.turns) == 1, 10)
        with self.lock:
            self.turns.wake_all()   # predicate still false: waits on
        with self.lock:
            self.applied = 8
            self.turns.wake_all()
        thread.join(10)
        self.assertEqual({9: True}, results)
        with self.lock:
            self.assertFalse(self.turns.wait(20, lambda: False, 0.01))
        self.assertEqual(0, len(self.turns))


class _Store(object):
    """A state store that records its batches (commit_batch only)."""

    def __init__(self):
        self.batches = []
        self.gate = threading.Event()
        self.gate.set()

    def commit_batch(self, stream, collector, fetcher, seq, committed_at,
                     changes, versions):
        self.gate.wait(30)
        self.batches.append((seq, len(changes)))


class TestDurableWaits(base.TestCase):

    def setUp(self):
        super().setUp()
        self.store = _Store()
        self.persister = persister.Persister(self.store, 's', 'c', 'f')
        self.persister.start()
        self.addCleanup(self.persister.stop, 1.0)

    def test_waiters_wake_when_their_seq_is_durable(self):
        self.store.gate.clear()
        results = {}

        def wait(seq):
            results[seq] = self.persister.wait_durable(seq, 30)

        threads = [threading.Thread(target=wait, args=(seq,))
                   for seq in (1, 2)]
        for thread in threads:
            thread.start()
        base.wait_for(lambda: len(self.persister._waiters) == 2, 10)
        self.persister.submit(1, None, ['x'], {})
        self.store.gate.set()
        threads[0].join(10)
        self.assertEqual({1: True}, results)
        self.assertEqual([2], list(self.persister._waiters))
        self.persister.submit(2, None, ['y'], {})
        threads[1].join(10)
        self.assertEqual({1: True, 2: True}, results)
        self.assertEqual({}, self.persister._waiters)

    def test_stop_releases_waiters(self):
        self.store.gate.clear()
        self.persister.submit(1, None, ['x'], {})
        results = []
        thread = threading.Thread(target=lambda: results.append(
            self.persister.wait_durable(5, 30)))
        thread.start()
        base.wait_for(lambda: self.persister._waiters, 10)
        self.store.gate.set()
        self.persister.stop(5.0)
        thread.join(10)
        self.assertEqual([False], results)

    def test_durable_now_returns_without_waiting(self):
        self.persister.mark_durable(7)
        self.assertTrue(self.persister.wait_durable(3, 0))
        self.assertEqual({}, self.persister._waiters)
