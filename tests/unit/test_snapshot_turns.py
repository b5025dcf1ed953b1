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

"""Numbered snapshot pages: each waits for the page before it."""

from concurrent import futures

from oslo_publish import snapshot_turns
from tests import base


class TestPageTurns(base.TestCase):

    def setUp(self):
        super().setUp()
        self.turns = snapshot_turns.PageTurns(['t', 'u'], window=4)
        self.pool = futures.ThreadPoolExecutor(2)
        self.addCleanup(self.pool.shutdown)

    def test_first_page_starts_at_the_beginning(self):
        self.assertEqual((True, None), self.turns.start_of('t', 0, 1))

    def test_next_page_waits_for_the_one_before(self):
        """Page 1's start is only known once page 0 was read."""
        waiting = self.pool.submit(self.turns.start_of, 't', 1, 30)
        self.assertRaises(futures.TimeoutError, waiting.result, 0.05)
        self.turns.advance('t', 0, '[7]')
        self.assertEqual((True, '[7]'), waiting.result(30))
        # Tables are numbered apart.
        self.assertIsNone(self.turns.start_of('u', 1, 0.01))

    def test_pages_after_the_last_are_empty(self):
        """Past the last page: (False, None), also for waiting requests."""
        waiting = self.pool.submit(self.turns.start_of, 't', 2, 30)
        self.turns.advance('t', 0, '[7]')
        self.turns.advance('t', 1, None)
        self.assertEqual((False, None), waiting.result(30))
        self.assertEqual((False, None), self.turns.start_of('t', 3, 1))
        self.assertEqual((True, '[7]'), self.turns.start_of('t', 1, 1))

    def test_too_far_ahead_is_refused_at_once(self):
        self.assertIsNone(self.turns.start_of('t', 5, 30))
        self.assertIsNone(self.turns.start_of('t', -1, 30))

    def test_long_served_pages_are_refused(self):
        for index in range(20):
            self.turns.advance('t', index, '[%d]' % index)
        self.assertIsNone(self.turns.start_of('t', 2, 30))
        self.assertEqual((True, '[18]'), self.turns.start_of('t', 19, 1))

    def test_close_wakes_the_waiting(self):
        waiting = self.pool.submit(self.turns.start_of, 't', 1, 30)
        self.assertRaises(futures.TimeoutError, waiting.result, 0.05)
        self.turns.close()
        self.assertIsNone(waiting.result(30))
