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

"""``capture = logical`` on PostgreSQL publishing straight from the slot.

A private cluster with ``wal_level = logical``. The cases shared with
MariaDB are in :mod:`.direct_cases`; the PostgreSQL-only ones here.
"""

from oslo_publish.logcapture import pgoutput
from tests import base
from tests.functional import direct_cases
from tests.functional import test_logical_capture as logical


class TestDirectPostgreSQL(direct_cases.DirectCases, logical._LogicalCase):

    DIALECT = direct_cases.POSTGRESQL
    start_position = ''

    def outbox_ids_used(self):
        """True once any outbox entry was ever written (its sequence)."""
        with self.engine.connect() as conn:
            return conn.exec_driver_sql(
                "SELECT pg_sequence_last_value(pg_get_serial_sequence("
                "'oslo_publish_outbox', 'id'))").scalar() is not None

    def make_reader(self):
        return pgoutput.Reader(self.conf, self.engine, self.tables,
                               self.stream)

    def kill_before_record(self, stager, killed):
        stager._batch.record = killed
        return lambda: None   # the next stager has its own batch

    def restart_unconfirmed(self, start):
        stager = self._stager()
        stager.reader.close()
        stager.reader.start(None)   # from the slot: never confirmed
        return stager

    def assert_log_confirmed(self, position):
        slot = pgoutput.object_name(self.stream)

        def confirmed():
            with self.engine.connect() as conn:
                return pgoutput.lsn_int(conn.exec_driver_sql(
                    'SELECT confirmed_flush_lsn::text FROM '
                    'pg_replication_slots WHERE slot_name = %(n)s',
                    {'n': slot}).scalar())
        # The slot is confirmed (asynchronously) up to what was recorded.
        base.wait_for(lambda: confirmed() >= pgoutput.lsn_int(position),
                      30, message='slot not confirmed')

    def test_connections_killed_lose_nothing(self):
        """Every session terminated (a restart's effect) while streaming."""
        self.start_relay()
        self.insert(1)
        self.settle()
        for n in range(2, 6):
            logical.terminate_sessions(self.engine)
            self.insert(n)
        self.settle()
        self.assertEqual(5, len(self.assert_mirror()))
        self.assertEqual(5, self.recorded()[0])
