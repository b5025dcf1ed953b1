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

"""The functional fixtures reach the real services."""

import oslo_messaging
import sqlalchemy as sa

from tests import base


class _DatabaseFixtureTests(object):

    def test_private_database_is_empty_and_writable(self):
        """Each test gets an empty database of its own."""
        self.assertEqual([], sa.inspect(self.engine).get_table_names())
        with self.engine.begin() as conn:
            conn.exec_driver_sql('CREATE TABLE t (id INTEGER PRIMARY KEY)')
            conn.exec_driver_sql('INSERT INTO t VALUES (1)')
        with self.engine.connect() as conn:
            self.assertEqual(1, conn.exec_driver_sql(
                'SELECT COUNT(*) FROM t').scalar())


class TestDatabaseFixturePostgreSQL(_DatabaseFixtureTests,
                                    base.BackendTestCase):
    BACKEND = 'postgresql'


class TestDatabaseFixtureMySQL(_DatabaseFixtureTests, base.BackendTestCase):
    BACKEND = 'mysql'


class TestDatabaseFixtureSQLite(_DatabaseFixtureTests, base.BackendTestCase):
    BACKEND = 'sqlite'


class TestTransportFixture(base.TestCase):

    def test_rabbitmq_round_trip(self):
        """A notification sent on the private exchange is received."""
        tf = self.useFixture(base.TransportFixture(self.conf))
        transport = oslo_messaging.get_notification_transport(self.conf)
        self.addCleanup(transport.cleanup)
        got = []

        class Endpoint(object):
            def info(self, ctxt, publisher_id, event_type, payload, md):
                got.append(payload)

        listener = oslo_messaging.get_notification_listener(
            transport, [oslo_messaging.Target(topic=tf.topic)],
            [Endpoint()], executor='threading', pool=base.unique_name())
        listener.start()
        self.addCleanup(listener.wait)
        self.addCleanup(listener.stop)
        notifier = oslo_messaging.Notifier(
            transport, publisher_id='test', driver='messagingv2',
            topics=[tf.topic])
        base.wait_for(lambda: notifier.info({}, 'x.y', {'n': 1}) or got,
                      timeout=30, interval=0.5)
        self.assertEqual({'n': 1}, got[0])
