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


"""A short chaos convergence run in the test suite (see tools/chaos.py).

Two tests (PostgreSQL and MariaDB) each run one seed of
:mod:`tools.chaos` for a few seconds on a private RabbitMQ node of its
own (started and removed by the test; the faults stop and start that
node, never the shared broker): concurrent writer processes, the
standalone relay and ``consumer-sync`` in their own processes, faults at
seeded moments, duplicates, reordering and replays. Together they inject
every fault kind at least once. The ``Logical`` pair runs one short seed
with ``capture = logical`` (the relay reads the log of a private server;
its database connections killed include the log reader's). The long run
is ``python -m tools.chaos --long [--capture logical]``.
"""

from tests import base
from tools import chaos

DURATION = 10.0
TARGET = 30.0


class _ChaosTests(object):

    BACKEND = None
    SEED = None
    KINDS = None

    CAPTURE = 'session'
    DURATION = DURATION

    def test_converges_under_faults(self):
        """The mirror equals the host: nothing lost, no phantom, gapless."""
        node = chaos.Node(self.useFixture(base.RabbitNodeFixture()))
        result = chaos.Run(node, self.BACKEND, self.SEED,
                           duration=self.DURATION, converge_timeout=90.0,
                           kinds=self.KINDS,
                           capture=self.CAPTURE).execute()
        self.addDetail('chaos', _text(result.line()))
        self.assertEqual([], result.failures, result.line())
        self.assertEqual((0, 0, 0, 0),
                         (result.lost, result.phantoms,
                          result.duplicates_applied, result.gaps))
        self.assertLessEqual(result.converge_seconds, TARGET)
        for kind in self.KINDS:
            self.assertGreaterEqual(result.faults[kind], 1, kind)
        self.assertGreater(sum(result.faults[k] for k in chaos.SHUFFLES),
                           0)
        # The line names the writers' committed and failed transactions
        # (unexpected failures are in the summary and the writer logs).
        self.assertGreater(result.transactions, 50, result.line())
        self.assertGreater(result.rolled_back + result.savepoints, 0)


def _text(line):
    from testtools import content
    return content.text_content(line)


class TestChaosPostgreSQL(_ChaosTests, base.TestCase):
    BACKEND = 'postgresql'
    SEED = 1
    KINDS = ('rabbit_restart', 'relay_kill', 'consumer_db_kill')


class TestChaosMariaDB(_ChaosTests, base.TestCase):
    BACKEND = 'mysql'
    SEED = 2
    KINDS = ('consumer_kill', 'queue_purge', 'relay_db_kill')


class TestChaosLogicalPostgreSQL(_ChaosTests, base.TestCase):
    BACKEND = 'postgresql'
    SEED = 3
    CAPTURE = 'logical'
    DURATION = 6.0
    KINDS = ('relay_kill', 'relay_db_kill', 'rabbit_restart')


class TestChaosLogicalMariaDB(_ChaosTests, base.TestCase):
    BACKEND = 'mysql'
    SEED = 4
    CAPTURE = 'logical'
    DURATION = 6.0
    KINDS = ('relay_db_kill', 'relay_kill', 'queue_purge')
