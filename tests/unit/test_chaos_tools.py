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


"""Unit tests of the chaos runner's own logic (tools/chaos.py)."""

import random

from tests import base
from tools import chaos
from tools import chaos_writer


class TestMarked(base.TestCase):

    def test_marker_text_and_integer_are_found_anywhere(self):
        """The text marker and the integer marker are found at any depth."""
        self.assertTrue(chaos.marked({'a': [{'name': 'ROLLEDBACK-7'}]}))
        self.assertTrue(chaos.marked(
            {'changes': [{'after': {'n': chaos_writer.MARKER_INT}}]}))

    def test_committed_values_are_not_markers(self):
        """Values that merely contain the marker digits are no markers."""
        self.assertFalse(chaos.marked({'name': 'upd-424242', 'n': 424242,
                                       'v': -4242420, 'ok': True}))
        self.assertFalse(chaos.marked({'__t': 'decimal', 'v': '-4242.42'}))


class TestFaultPlan(base.TestCase):

    def test_plan_is_seeded_and_covers_every_kind(self):
        """A seed gives one plan; 24 s of faults use every kind once."""
        first = chaos._fault_plan(random.Random(3), 24.0)
        self.assertEqual(first, chaos._fault_plan(random.Random(3), 24.0))
        self.assertEqual(sorted(chaos.FAULTS), sorted(k for _t, k in first))
        self.assertEqual(sorted(t for t, _k in first), [t for t, _k in first])
        self.assertTrue(all(1.5 <= t <= 23.0 for t, _k in first))

    def test_plan_with_given_kinds(self):
        """Given kinds are all planned, at seeded moments."""
        plan = chaos._fault_plan(random.Random(1), 10.0, ('relay_kill',
                                                          'queue_purge'))
        self.assertEqual(['relay_kill', 'queue_purge'],
                         [k for _t, k in plan])


class TestSummary(base.TestCase):

    def test_summary_reports_every_figure(self):
        """The summary names runs, faults, totals, zeros and percentiles."""
        results = []
        for seed, seconds in ((1, 2.0), (2, 4.0), (3, 9.0)):
            result = chaos.RunResult('postgresql', seed)
            result.faults.update({'relay_kill': 1, 'duplicate': 5})
            result.transactions, result.deltas = 100, 250
            result.converge_seconds = seconds
            results.append(result)
        text = chaos.summary(results)
        self.assertIn('runs: 3 (postgresql=3), passed 3, failed 0', text)
        self.assertIn('relay_kill=3', text)
        self.assertIn('duplicate=15', text)
        self.assertIn('transactions: 300 committed', text)
        self.assertIn('deltas: 750', text)
        self.assertIn('lost = 0, phantoms = 0, duplicates applied = 0', text)
        self.assertIn('p50 4.00s, max 9.00s', text)
        self.assertIn('seed=1 db=postgresql ok', results[0].line())

    def test_line_names_logical_capture(self):
        """A run with capture = logical says so; session runs as before."""
        result = chaos.RunResult('mysql', 4, 'logical')
        result.converge_seconds = 1.0
        self.assertIn('seed=4 db=mysql capture=logical ok', result.line())
        self.assertEqual(
            ['--capture', 'logical'],
            ['--capture', chaos.parse_args(['--capture', 'logical']).capture])
        self.assertEqual('session', chaos.parse_args([]).capture)
