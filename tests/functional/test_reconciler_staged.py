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

"""A resync that fails mid-read leaves the state store as it was.

On PostgreSQL the snapshot's rows go to the store while the pages are
read (consumer.staged_rows); the other backends write them at the
install. Either way a failure after some pages leaves the previous rows
and positions, and the retry converges.
"""

from oslo_publish import wire
from tests.unit import test_reconciler


class _MidReadFailure(object):

    def test_failure_mid_read_leaves_the_previous_rows(self):
        rec = self.synced()
        before_rows = dict(self.state.load_rows(self.STREAM, 'instances'))
        before_seq = self.state.load(rec.stream, rec.collector,
                                     rec.fetcher)['instances'].seq
        for i in range(6, 1600):
            self.host.change('instances', wire.INSERT,
                             {'id': i, 'name': 'vm%d' % i})
        real_page = self.host.snapshot_page
        calls = []

        def failing_page(ctxt, snapshot_id, table, after):
            calls.append(after)
            if len(calls) == 450:  # after 1347 rows: one page staged
                raise RuntimeError('host died mid-snapshot')
            return real_page(ctxt, snapshot_id, table, after)
        self.host.snapshot_page = failing_page
        stages = []
        stage_tables = self.state.stage_tables

        def recording(*unit):
            stages.append(stage_tables(*unit))
            return stages[-1]
        self.state.stage_tables = recording
        rec.resync()
        rec.poll()
        if self.STAGED:
            # Rows reached the store's transaction before the failure.
            self.assertTrue(stages[0].aborted)
            self.assertGreaterEqual(stages[0]._loaded, 1000)
        else:
            self.assertEqual([None], stages)
        self.assertEqual(450, len(calls))
        self.assertIn('host died', rec.last_error)
        self.assertEqual(before_rows,
                         dict(self.state.load_rows(self.STREAM, 'instances')))
        self.assertEqual(before_seq, self.state.load(
            rec.stream, rec.collector, rec.fetcher)['instances'].seq)
        self.host.snapshot_page = real_page
        self.clock.advance(rec._resync_at - self.clock.now)
        rec.poll()
        self.assertTrue(rec.synced)
        self.assertConverged(rec)


class TestMidReadFailureSQLite(_MidReadFailure,
                               test_reconciler.ReconcilerTestCase):
    STATE_BACKEND = 'sqlite'
    STAGED = False


class TestMidReadFailurePostgreSQL(_MidReadFailure,
                                   test_reconciler.ReconcilerTestCase):
    STATE_BACKEND = 'postgresql'
    STAGED = True


class TestMidReadFailureMySQL(_MidReadFailure,
                              test_reconciler.ReconcilerTestCase):
    STATE_BACKEND = 'mysql'
    STAGED = False
