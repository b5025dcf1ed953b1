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

"""consumer.health judges a stream from its status record."""

import datetime

from consumer import health
from consumer import state
from tests import base

NOW = 1_800_000_000.0


def _status(age=0.5, heard_age=0.5, applied=10, heard=10, synced=True,
            state_name='live'):
    updated = None if age is None else datetime.datetime.fromtimestamp(
        NOW - age, datetime.timezone.utc)
    counters = {'synced': synced, 'applied_seq': applied, 'heard_seq': heard,
                'last_heard_at': None if heard_age is None
                else NOW - heard_age}
    return state.StreamStatus(state_name, None, counters, updated)


class TestAssess(base.TestCase):

    def assess(self, status, interval=1.0):
        return health.assess('nova', status, NOW, interval)

    def test_fresh_and_caught_up_is_synced(self):
        """A fresh record, a recent heartbeat and nothing behind: synced."""
        verdict = self.assess(_status())
        self.assertTrue(verdict.synced)
        self.assertIsNone(verdict.reason)

    def test_stale_record_means_consumer_not_running(self):
        """A record older than the window says to check consumer-sync."""
        verdict = self.assess(_status(age=3.5))
        self.assertFalse(verdict.synced)
        self.assertIn('consumer-sync is running', verdict.reason)

    def test_silence_means_wrong_topic(self):
        """No heartbeat within the window says to check topics."""
        for heard_age in (None, 4.0):
            verdict = self.assess(_status(heard_age=heard_age))
            self.assertFalse(verdict.synced)
            self.assertIn('topics', verdict.reason)

    def test_silence_is_judged_as_of_the_record(self):
        """A consumer that just died is not blamed on its topics.

        Its last record (2.9 s old) heard the host 0.3 s before it was
        written: now the host is 3.2 s unheard, but only because nobody
        listens any more. Once the record is stale the verdict says the
        consumer is not running.
        """
        verdict = self.assess(_status(age=2.9, heard_age=3.2))
        self.assertTrue(verdict.synced)
        verdict = self.assess(_status(age=3.1, heard_age=3.4))
        self.assertFalse(verdict.synced)
        self.assertIn('consumer-sync is running', verdict.reason)

    def test_behind_the_heard_seq_is_not_synced(self):
        """Applied below the last heard seq is not synced."""
        verdict = self.assess(_status(applied=9, heard=170))
        self.assertFalse(verdict.synced)
        self.assertIn('behind', verdict.reason)

    def test_reconciler_not_live_is_not_synced(self):
        """The reconciler's own flag still counts."""
        verdict = self.assess(_status(synced=False, state_name='initial'))
        self.assertFalse(verdict.synced)
        self.assertIn('initial', verdict.reason)

    def test_window_scales_with_heartbeat_interval(self):
        """Twice the interval, never below the status refresh floor."""
        self.assertEqual(health.MIN_WINDOW, health.window(0.2))
        self.assertEqual(20.0, health.window(10.0))
        self.assertTrue(self.assess(_status(age=15, heard_age=15),
                                    interval=10.0).synced)
