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

"""``capture = logical`` on MariaDB: the faults of the PostgreSQL runs.

The scenarios of :mod:`tests.functional.test_logical_ops` on the private
binlog server (:mod:`tests.private_mariadb`): the server restarted
(SIGTERM, and SIGKILL = a crash) while two writers commit, and the
broker (a private RabbitMQ node) stopped for ten seconds while a writer
commits. The relay runs in this process; what it published is compared
with the table, seq by seq: nothing lost, nothing doubled, gapless.
"""

import sqlalchemy as sa

from oslo_publish.logcapture import binlog
from oslo_publish import migration
from oslo_publish import schema
from tests import base
from tests.functional import test_logical_capture as lc
from tests.functional import test_logical_ops as ops
from tests import private_mariadb


class _BinlogCase(base.TestCase):
    """``items`` (as :class:`.test_logical_capture._LogicalCase`)."""

    #: The ``items`` table.
    DDL = lc.DDL

    def setUp(self):
        super().setUp()
        self.db = self.useFixture(private_mariadb.DatabaseFixture())
        self.engine = sa.create_engine(self.db.url, pool_size=10)
        self.addCleanup(self.engine.dispose)
        with self.engine.begin() as conn:
            conn.exec_driver_sql(self.DDL)
        migration.upgrade(self.engine)
        self.stream = base.unique_name('bo')
        self.base_conf = self.conf
        self.conf = lc.make_conf(self.stream)
        self.tables = schema.resolve_tables(self.conf, engine=self.engine)
        binlog.Reader.setup(self.conf, self.engine, self.tables,
                            self.stream)

    def start_relay(self):
        lc.start_staging(self)
        self.wait_reading(self)

    def wait_reading(self, handle):
        """The binlog is read from its end at the first start: wait."""
        self.assertTrue(handle.stager.streaming.wait(30),
                        'the binlog reader did not start')

    def catch_up(self, timeout=60):
        binlog.catch_up(self.engine, self.stream, self.conf, self.tables,
                        timeout)

    def settle(self):
        self.catch_up()
        self.assertTrue(self.relay.wait_drained(60))

    table = lc._LogicalCase.table


class TestServerRestartMariaDB(ops._ServerRestart, _BinlogCase):
    """The private server stopped and started while writers commit."""

    def restart_server(self, mode):
        self.db.server.restart(mode)

    def server_started(self):
        return self.db.server.starts


class TestBrokerOutageMariaDB(ops._BrokerOutage, _BinlogCase):
    pass


class TestFirstStartMariaDB(_BinlogCase):

    def test_commit_between_setup_and_first_start_is_captured(self):
        """capture-setup pins the start: nothing before the relay is lost.

        (Without it the first reader started at the binlog's end when
        the relay started, and this insert was never published.)
        """
        with self.engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO items VALUES (7, 'early', 0, NULL, 'pw')")
        self.start_relay()
        with self.engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO items VALUES (8, 'late', 0, NULL, 'pw')")
        self.settle()
        rows, seqs = self.publisher.replay()
        self.assertEqual(self.table(), rows)
        self.assertEqual([1, 2], seqs)
        self.assertEqual(
            [('insert', [7]), ('insert', [8])],
            [(c['op'], c['key'])
             for seq in seqs
             for c in self.publisher.transactions[seq]['changes']])
