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

"""The state store's batch writes stay index lookups after a snapshot.

Found by the benchmarks: right after ``replace_table`` bulk-loaded the
mirrored rows, PostgreSQL had no statistics for them and answered
``commit_batch``'s ``key_hash IN (...)`` by scanning every mirrored row of
the table (tens of milliseconds per batch at 100,000 rows) until
autovacuum analyzed it.
"""

from consumer import state as state_mod
from tests import base

STREAM, TABLE = 'st', 'items'


class TestStatePlannerPostgreSQL(base.TestCase):

    def test_batch_delete_uses_the_whole_key_after_replace_table(self):
        """After replace_table the batch delete looks rows up by key_hash."""
        db = self.useFixture(base.DatabaseFixture('postgresql'))
        store = state_mod.StateStore.from_url(db.url)
        self.addCleanup(store.close)
        store.upgrade()
        store.replace_table(STREAM, 'oslo_publish', 'rpc', TABLE,
                            {(n,): {'id': n, 'name': 'row %d' % n}
                             for n in range(1, 20001)}, 0, 'v1')
        digests = [state_mod.key_hash(state_mod.key_text((n,)))
                   for n in (5, 7)]
        with db.engine.connect() as conn:
            plan = '\n'.join(r[0] for r in conn.exec_driver_sql(
                "EXPLAIN DELETE FROM consumer_rows WHERE stream = %(s)s "
                "AND table_name = %(t)s AND key_hash IN %(h)s",
                {'s': STREAM, 't': TABLE, 'h': tuple(digests)}))
        cond = [line for line in plan.splitlines() if 'Index Cond' in line]
        self.assertTrue(cond, plan)
        self.assertIn('key_hash', cond[0], plan)
