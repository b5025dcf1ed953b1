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

"""The benchmark suite imports and its in-memory benchmark runs.

Nothing here asserts on a timing: the figures are the suite's business.
"""

import importlib
import json
import logging
import os
import socket

from benchmarks import common
from benchmarks import host
from benchmarks import pgcluster
from benchmarks import stages
from benchmarks import suite
from tests import base


class TestBenchmarkSuite(base.TestCase):

    def test_every_benchmark_module_imports(self):
        """Every benchmark module imports and has run() and plot()."""
        for name in suite.BENCHMARKS:
            module = importlib.import_module(
                suite.MODULES.get(name, 'benchmarks.' + name))
            self.assertTrue(callable(module.run), name)
            self.assertTrue(callable(module.plot), name)

    def test_quick_readers_writes_results(self):
        """--quick --only readers writes a results file and a table."""
        self.assertEqual(0, suite.main(
            ['--quick', '--only', 'readers', '--no-plots',
             '--readers-rows', '5000',
             '--results-dir', self.tmpdir]))
        with open(os.path.join(self.tmpdir, 'results.json')) as f:
            got = json.load(f)['benchmarks']['readers']
        self.assertEqual([], [f for f in got['figures']
                              if f['ratio'] is None])
        with open(os.path.join(self.tmpdir, 'results.md')) as f:
            self.assertIn('| 6 consistent view vs copy.deepcopy, 5,000 rows |',
                          f.read())

    def test_library_warnings_go_to_the_run_log_file(self):
        """A warning logged during a run lands in the file, not stderr."""
        root = logging.getLogger()
        handlers = list(root.handlers)
        with suite._log_to_file() as path:
            logging.getLogger('amqp').warning('Received method %s', 'x')
        self.assertEqual(handlers, root.handlers)
        with open(path) as f:
            self.assertIn('WARNING amqp Received method x', f.read())
        os.unlink(path)
        with suite._log_to_file() as path:
            pass
        self.assertFalse(os.path.exists(path), 'an empty log is removed')

    def test_quick_writes_outside_the_committed_results(self):
        """--quick and --output never name the committed results or plots."""
        committed = {suite.RESULTS_DIR, suite.PLOTS_DIR}
        for quick, output in ((True, None), (True, self.tmpdir),
                              (False, self.tmpdir)):
            got = suite.output_dirs(quick, output)
            self.assertEqual(set(), committed & set(got), (quick, output))
        self.assertEqual((suite.RESULTS_DIR, suite.PLOTS_DIR),
                         suite.output_dirs(False, None))

    def test_table_ratio_is_the_ratio_of_the_figures_shown(self):
        """The ratio column is value / baseline of the same row."""
        fig = common.figure('1 write path outbox, MariaDB', 1.765, 'ms/tx',
                            1.025, 'no middleware',
                            target=('ratio', '<=', 1.15), paired_ratio=1.45)
        results = {'benchmarks': {'write_path': {'figures': [fig]}},
                   'command': 'python -m benchmarks', 'host': 'h',
                   'cpus': 2, 'python': '3', 'finished': 'now'}
        table = suite.markdown(results)
        self.assertIn('| 1.72 x baseline | <= 1.15x | no |', table)
        self.assertIn('**ratio**', table)
        self.assertIn('1.72 x baseline', suite.rst_table(results))


class TestFigure(base.TestCase):

    def test_met_is_computed_from_the_figures(self):
        """met follows the measured ratio or value, never a constant."""
        fewer = common.figure('reads', 2000.0, 'rows', 100000.0, 'polling',
                              inverse=True, ratio_label='x fewer',
                              target=('ratio', '>=', 50))
        self.assertEqual(50.0, fewer['ratio'])
        self.assertTrue(fewer['met'])
        self.assertEqual('>= 50x fewer', fewer['target'])
        slow = common.figure('p50', 7.0, 'ms', target=('value', '<=', 5),
                             limit=('value', '<=', 10))
        self.assertFalse(slow['met'])
        self.assertTrue(slow['within_limit'])
        self.assertIsNone(common.figure('x', None, 's',
                                        target=('value', '<=', 1))['met'])


class TestStatementKind(base.TestCase):

    def test_kinds(self):
        """Host reads are split by verb, table and aggregate."""
        self.assertEqual('SELECT oslo_publish_outbox (aggregate)',
                         host.statement_kind(
                             'SELECT count(*), min(o.committed_at) '
                             'FROM oslo_publish_outbox'))
        self.assertEqual('SELECT bench_items', host.statement_kind(
            'SELECT bench_items.id FROM bench_items WHERE id IN (1)'))
        self.assertEqual('UPDATE oslo_publish_outbox', host.statement_kind(
            'UPDATE oslo_publish_outbox SET seq=1 RETURNING id'))
        self.assertEqual('BEGIN oslo_publish_streams', host.statement_kind(
            'BEGIN; SELECT last_seq FROM oslo_publish_streams FOR UPDATE'))


class TestSelectCounter(base.TestCase):

    def test_counts_reads_not_inserted_keys(self):
        """SELECT rows count; rows a write hands back are listed apart."""
        import sqlalchemy as sa
        db = self.useFixture(base.DatabaseFixture('postgresql'))
        engine = sa.create_engine(db.url)
        self.addCleanup(engine.dispose)
        counter = host.SelectCounter(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql('CREATE TABLE t (id serial PRIMARY KEY, '
                                 'v integer)')
            conn.exec_driver_sql('INSERT INTO t (v) VALUES (1), (2), (3) '
                                 'RETURNING id')
            conn.exec_driver_sql('SELECT id FROM t')
            conn.exec_driver_sql('UPDATE t SET v = 5 WHERE id < 3 '
                                 'RETURNING v')
            # Reads that do not start with SELECT count too (the relay's
            # claim of outbox entries, its lock of the stream row).
            conn.exec_driver_sql('WITH r AS (UPDATE t SET v = 6 WHERE '
                                 'id = 3 RETURNING id) SELECT id FROM r '
                                 'UNION ALL SELECT id FROM t WHERE id = 1')
        self.assertEqual(5, counter.rows)
        self.assertEqual({'INSERT t RETURNING (not counted)': 3,
                          'SELECT t': 3,
                          'UPDATE t RETURNING (not counted)': 2,
                          'WITH t': 2},
                         dict(counter.by_kind))


class TestStages(base.TestCase):

    def test_breakdown(self):
        """Each stage is the difference of the matching timestamps."""
        commits = [(1, 10, 100.0), (2, 11, 200.0), (3, 12, 300.0)]
        tapped = {(1, 10): (100.001, 100.002, 100.005),
                  (2, 11): (200.001, 200.004, 200.006)}
        handled = {(1, 10): 100.015}
        got = stages.breakdown(commits, handled, tapped)
        self.assertAlmostEqual(4.0, got['commit_to_sent']['p99_ms'], 3)
        self.assertEqual(2, got['commit_to_received']['count'])
        self.assertAlmostEqual(10.0, got['received_to_cache']['p50_ms'], 3)
        self.assertEqual(1, got['commit_to_cache']['count'])
        self.assertEqual(
            'delta', stages._payload(json.dumps({'oslo.message': json.dumps(
                {'payload': {'kind': 'delta'}})}))['kind'])


class TestPrivateCluster(base.TestCase):

    def test_cluster_runs_logical_and_is_removed(self):
        """The private cluster has wal_level=logical and is gone after."""
        import sqlalchemy as sa
        with pgcluster.cluster() as server:
            with pgcluster.database(server) as url:
                engine = sa.create_engine(url)
                try:
                    with engine.connect() as conn:
                        self.assertEqual('logical', conn.exec_driver_sql(
                            'SHOW wal_level').scalar())
                finally:
                    engine.dispose()
            port = sa.engine.make_url(server).port
        self.assertRaises(OSError, socket.create_connection,
                          ('127.0.0.1', port), 1)


class TestWriteSteps(base.TestCase):

    def test_summary_is_median_and_decile_range(self):
        """Paired ratios are summarised by median, p10 and p90."""
        from benchmarks import write_steps
        ratios = [1.0 + n / 10.0 for n in range(11)]  # 1.0 .. 2.0
        self.assertEqual({'median': 1.5, 'p10': 1.1, 'p90': 1.9},
                         write_steps._summary(ratios))
        self.assertEqual(3.0, write_steps._quantile([3.0], 0.9))

    def test_steps_are_worker_modes_that_install_nothing(self):
        """The step modes are workers' modes and not install() modes."""
        from benchmarks import write_path
        from benchmarks import write_steps
        for mode in write_steps.STEPS:
            self.assertIn(mode, write_path.MODES + write_path.EXTRA_MODES)
        for mode in write_path.STEPS:
            self.assertNotIn(mode, write_path.INSTALLED)


class TestPublishCost(base.TestCase):

    def test_medians_skip_unprofiled_runs(self):
        """Calls per message come from the profiled runs only."""
        from benchmarks import publish_cost
        runs = [{'cpu_ms': 1.0, 'wall_ms': 2.0, 'calls': 400.0},
                {'cpu_ms': 3.0, 'wall_ms': 4.0},
                {'cpu_ms': 2.0, 'wall_ms': 9.0}]
        self.assertEqual({'cpu_ms': 2.0, 'wall_ms': 4.0, 'calls': 400.0},
                         publish_cost._medians(runs))
