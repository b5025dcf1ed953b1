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
import os

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
