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

"""``capture = logical`` on MariaDB publishing straight from the binlog.

The private binlog server. The cases shared with PostgreSQL are in
:mod:`.direct_cases`.
"""

import fixtures
import pymysql.cursors

from oslo_publish.logcapture import binlog
from oslo_publish.logcapture import direct
from tests.functional import direct_cases
from tests.functional import test_binlog_ops


class TestDirectMariaDB(direct_cases.DirectCases,
                        test_binlog_ops._BinlogCase):

    DIALECT = direct_cases.MARIADB
    # MariaDB's own types (the ops cases use the PostgreSQL DDL's).
    DDL = ('CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(32) '
           'NOT NULL, n INT NOT NULL DEFAULT 0, price DECIMAL(10, 2), '
           'secret TEXT) ENGINE=InnoDB CHARSET=utf8mb4')

    def setUp(self):
        super().setUp()
        self.url = self.db.url
        # The binlog position the setup recorded, before any change.
        self.start_position = self.recorded()[1]

    def outbox_ids_used(self):
        """True once any outbox entry was ever written (its counter)."""
        with self.engine.connect() as conn:
            return (conn.exec_driver_sql(
                'SELECT AUTO_INCREMENT FROM information_schema.TABLES '
                'WHERE TABLE_SCHEMA = DATABASE() AND '
                "TABLE_NAME = 'oslo_publish_outbox'").scalar() or 1) > 1

    def make_reader(self):
        return binlog.Reader(self.conf, self.engine, self.tables,
                             self.stream)

    def kill_before_record(self, stager, killed):
        # The two-round-trip batch (staging_my) records in one packet.
        self.assertIsNotNone(stager._batch)
        stager._batch.record = killed
        return lambda: None   # the next stager has its own batch

    def restart_unconfirmed(self, start):
        # The binlog still holds them: read again from before them.
        return self._stager(after=start)

    def test_outbox_insert_on_its_own_round_trip(self):
        """Above INLINE_BYTES the batch's INSERT goes by executemany."""
        self.useFixture(fixtures.MonkeyPatch(
            'oslo_publish.logcapture.staging_my.INLINE_BYTES', 0))
        many = []
        executemany = pymysql.cursors.Cursor.executemany

        def spy(cursor, query, args):
            many.append(query)
            return executemany(cursor, query, args)
        self.useFixture(fixtures.MonkeyPatch(
            'pymysql.cursors.Cursor.executemany', spy))
        self.test_outbox_retention_keeps_the_outbox_path()
        # The batch stages every batch (no generic INSERT runs beside it).
        self.assertIsNotNone(self.stager._batch)
        self.assertTrue([q for q in many if 'oslo_publish_outbox' in q])


class TestDirectMariaDBGeneric(TestDirectMariaDB):
    """The same cases on the generic staging step (no two-round-trip batch).

    What a server reached through another driver than PyMySQL gets.
    """

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.MonkeyPatch(
            'oslo_publish.logcapture.staging_my.usable', lambda engine: False))

    def test_outbox_insert_on_its_own_round_trip(self):
        self.skipTest('the generic step has no staging batch')

    def kill_before_record(self, stager, killed):
        self.assertIsNone(stager._batch)
        name = 'oslo_publish.logcapture.direct.record_last_seq'
        record = direct.record_last_seq
        self.useFixture(fixtures.MonkeyPatch(name, killed))
        return lambda: self.useFixture(fixtures.MonkeyPatch(name, record))
