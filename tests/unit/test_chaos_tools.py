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
import time
from unittest import mock

import fixtures
from sqlalchemy.orm import exc as orm_exc

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


class TestWriterFailures(base.TestCase):
    """A failed writer transaction is counted; the thread goes on."""

    def _writer(self, session):
        return chaos_writer.Writer(lambda: session, 0, 1)

    def test_stale_row_is_a_counted_rollback(self):
        """StaleDataError (a row deleted under an ORM update) is rolled back.

        It is not a DBAPIError: it used to end the writer's thread.
        """
        session = mock.Mock()
        session.commit.side_effect = orm_exc.StaleDataError('0 matched')
        writer = self._writer(session)
        writer._weighted = mock.Mock()
        rng = mock.Mock(random=mock.Mock(return_value=0.5),
                        randint=mock.Mock(return_value=1))
        writer.one(rng)
        session.rollback.assert_called_once_with()
        session.close.assert_called_once_with()
        self.assertEqual(1, writer.counts['errors'])
        self.assertEqual({'StaleDataError': 1}, writer.counts['error_kinds'])
        self.assertEqual(0, writer.counts['committed'])

    def test_unexpected_error_does_not_stop_the_thread(self):
        """The loop counts an unexpected failure and runs the next one."""
        calls = []
        writer = self._writer(None)

        def one(rng):
            calls.append(rng)
            if len(calls) == 1:
                raise RuntimeError('boom (test)')
        writer.one = one
        self.useFixture(fixtures.FakeLogger())
        writer._loop(0, time.monotonic() + 0.05, 1000.0)
        self.assertGreater(len(calls), 1)
        self.assertEqual(1, writer.counts['unexpected'])
        self.assertEqual({'RuntimeError': 1}, writer.counts['error_kinds'])

    def test_line_and_summary_show_the_writers(self):
        """Committed, failed by kind and unexpected are in the output."""
        result = chaos.RunResult('mysql', 4, 'logical')
        result.converge_seconds = 1.0
        result.committed, result.write_errors = 40, 3
        result.error_kinds.update({'StaleDataError': 2,
                                   'OperationalError(1213)': 1})
        result.unexpected = 1
        line = result.line()
        self.assertIn('committed=40 write_errors=3 '
                      '(OperationalError(1213)=1, StaleDataError=2)', line)
        text = chaos.summary([result])
        self.assertIn('3 failed and rolled back (OperationalError(1213)=1, '
                      'StaleDataError=2)', text)
        self.assertIn('writer transactions committed: 40; failed '
                      'unexpectedly: 1 (tracebacks in the writer logs)',
                      text)
