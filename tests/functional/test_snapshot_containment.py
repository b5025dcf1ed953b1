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

"""Containment of the snapshot server, on real databases and RabbitMQ.

What must hold: a request without a valid signed ``auth`` opens nothing
on the host (no transaction, no slot); a replayed request is refused;
one client cannot hold more than ``max_snapshots_per_client``
snapshots, so others still get theirs; the snapshot transaction carries
a database-side idle timeout; and restarting a snapshot server leaves no
queue of it on the broker.
"""

import subprocess
import uuid

import fixtures
import sqlalchemy as sa

from oslo_publish import exceptions
from oslo_publish import snapshot_auth
from oslo_publish import wire
from tests import base
from tests.functional import test_snapshot

KEY = 'containment-%s' % uuid.uuid4().hex[:8]


def open_transactions(engine):
    """Sessions of ``engine``'s database inside a transaction (not ours).

    PostgreSQL: ``pg_stat_activity``; MySQL/MariaDB:
    ``information_schema.innodb_trx``; SQLite: None (no server).
    """
    dialect = engine.dialect.name
    with engine.connect() as conn:
        if dialect == 'postgresql':
            return conn.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                "current_database() AND pid <> pg_backend_pid() AND "
                "state LIKE 'idle in transaction%'")).scalar()
        if dialect in ('mysql', 'mariadb'):
            return conn.execute(sa.text(
                "SELECT count(*) FROM information_schema.innodb_trx t "
                "JOIN information_schema.processlist p "
                "ON p.id = t.trx_mysql_thread_id "
                "WHERE p.db = DATABASE() AND p.id <> CONNECTION_ID()")
            ).scalar()
    return None


class _ContainmentTests(test_snapshot.SnapshotTestMixin):

    def setUp(self):
        super().setUp()
        # Refusals are logged as warnings: captured, shown on failure.
        self.logs = self.useFixture(fixtures.FakeLogger(level='INFO'))

    def opened_nothing(self, server):
        self.assertEqual(0, server.open_count())
        if open_transactions(self.engine) is not None:
            base.wait_for(lambda: open_transactions(self.engine) == 0, 10,
                          message='a host transaction was left open')

    def refused(self, reason):
        return self.metrics.value('oslo_publish_snapshots_refused_total',
                                  stream=self.stream, reason=reason)

    def test_unauthenticated_open_opens_nothing(self):
        """Unsigned or wrongly keyed opens are refused, nothing is opened."""
        self.conf.set_override('signing_key', KEY, 'oslo_publish')
        server = self.start_server()
        self.writer.transaction([self.writer.insert_item(1, 'a')])
        for auth, reason in (
                (None, 'unauthenticated'),
                (snapshot_auth.request_auth('wrong-' + KEY, self.stream,
                                            ['items'], 'c1'),
                 'bad_signature'),
                (snapshot_auth.request_auth(None, self.stream, ['items'],
                                            'c2'), 'unsigned')):
            exc = self.assertRaises(exceptions.SnapshotError, self.call,
                                    'snapshot_open', tables=['items'],
                                    auth=auth)
            self.assertIn('not authenticated', str(exc))
            self.assertEqual(1, self.refused(reason))
            self.opened_nothing(server)
        # The relay was not even paused for them: nothing was published.
        self.assertEqual(1, test_snapshot.delivery.pending(self.engine,
                                                           self.stream))
        watermark, rows, _pages = self.read_snapshot(['items'])
        self.assertEqual(1, watermark)
        self.assertEqual({(1,)}, set(rows['items']))
        self.opened_nothing(server)

    def test_replayed_request_is_refused(self):
        """The same signed auth object opens at most one snapshot."""
        self.conf.set_override('signing_key', KEY, 'oslo_publish')
        server = self.start_server()
        auth = snapshot_auth.request_auth(KEY, self.stream, ['items'], 'c')
        opened = self.call('snapshot_open', tables=['items'], auth=auth)
        self.call('snapshot_close', snapshot_id=opened['snapshot_id'])
        self.assertRaises(exceptions.SnapshotError, self.call,
                          'snapshot_open', tables=['items'], auth=auth)
        self.assertEqual(1, self.refused('replayed'))
        self.opened_nothing(server)

    def test_one_client_cannot_take_every_snapshot(self):
        """A client at max_snapshots_per_client leaves slots to others."""
        self.conf.set_override('max_concurrent_snapshots', 3,
                               'oslo_publish')
        server = self.start_server()
        first = self.call('snapshot_open', tables=['items'], client='greedy')
        exc = self.assertRaises(exceptions.SnapshotError, self.call,
                                'snapshot_open', tables=['items'],
                                client='greedy')
        self.assertIn('max_snapshots_per_client', str(exc))
        self.assertEqual(1, self.refused('client_busy'))
        other = self.call('snapshot_open', tables=['items'], client='fair')
        self.assertEqual(2, server.open_count())
        for opened in (first, other):
            self.call('snapshot_close', snapshot_id=opened['snapshot_id'])
        self.assertIn('snapshot_id', self.call(
            'snapshot_open', tables=['items'], client='greedy'))

    def test_repeated_page_request_gets_the_same_page(self):
        """A retried page request is answered right despite read-ahead."""
        self.start_server()
        self.writer.transaction([self.writer.insert_item(i, 'n%d' % i)
                                 for i in range(1, 20)])
        opened = self.call('snapshot_open', tables=['items'])
        ident = opened['snapshot_id']
        first = self.call('snapshot_page', snapshot_id=ident, table='items',
                          after=None)
        again = self.call('snapshot_page', snapshot_id=ident, table='items',
                          after=None)
        self.assertEqual(first['rows'], again['rows'])
        keys = [wire.decode_row(r)['id'] for r in first['rows']]
        after = first['next']
        while after is not None:
            page = self.call('snapshot_page', snapshot_id=ident,
                             table='items', after=after)
            keys.extend(wire.decode_row(r)['id'] for r in page['rows'])
            after = page['next']
        self.assertEqual(list(range(1, 20)), keys)

    def test_snapshot_transaction_has_a_database_idle_timeout(self):
        """The database itself ends S if the host stops answering."""
        self.conf.set_override('snapshot_idle_timeout', 5.0, 'oslo_publish')
        server = self.start_server()
        opened = self.call('snapshot_open', tables=['items'])
        session = server._session(opened['snapshot_id'])
        dialect = self.engine.dialect.name
        with session.lock:
            if dialect == 'postgresql':
                value = session.conn.exec_driver_sql(
                    'SHOW idle_in_transaction_session_timeout').scalar()
                self.assertEqual('65s', value)
            elif dialect in ('mysql', 'mariadb'):
                value = session.conn.exec_driver_sql(
                    'SELECT @@SESSION.wait_timeout').scalar()
                self.assertEqual(65, int(value))
            else:
                self.skipTest('SQLite has no server-side timeout')
        self.call('snapshot_close', snapshot_id=opened['snapshot_id'])
        self.opened_nothing(server)


def _broker_queues(prefix):
    out = subprocess.run(['rabbitmqctl', 'list_queues', '-q', '--no-table-'
                          'headers', 'name'], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    return sorted(line.strip() for line in out.splitlines()
                  if line.strip().startswith(prefix))


class TestContainmentSQLite(_ContainmentTests, base.BackendTestCase):
    BACKEND = 'sqlite'


class TestContainmentMySQL(_ContainmentTests, base.BackendTestCase):
    BACKEND = 'mysql'


class TestContainmentPostgreSQL(_ContainmentTests, base.BackendTestCase):
    BACKEND = 'postgresql'

    def test_restarts_leave_no_queue(self):
        """20 server restarts leave no queue of theirs on the broker."""
        # Durable queues, as delivery.durable_broker sets them up.
        prefix = wire.snapshot_topic(self.stream)
        before = _broker_queues(prefix + '.') + \
            _broker_queues(prefix + '_fanout')
        self.assertEqual([], before)
        names = []
        for _ in range(20):
            server = self.start_server()
            names.append(server.name)
            server.stop()
        running = self.start_server()
        # While a server runs its queues exist (the count can see them).
        self.assertEqual(['%s.%s' % (prefix, running.name)],
                         _broker_queues(prefix + '.'))
        self.assertEqual(1, len(_broker_queues(prefix + '_fanout')))
        running.stop()
        self.assertEqual([], _broker_queues(prefix + '.') +
                         _broker_queues(prefix + '_fanout'))
        self.assertEqual(21, len(set(names + [running.name])))
