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

"""Snapshots nobody will read are not left open (real RabbitMQ).

The case found by the chaos runner: a consumer's ``snapshot_open`` timed
out while the host could not answer (restarting, or waiting for the
stream lock); the host then took the request up anyway and opened a
snapshot whose answer went nowhere. It held a REPEATABLE READ
transaction and counted against the consumer's
``max_snapshots_per_client`` (the consumer's retries were refused
``client_busy``) until ``snapshot_idle_timeout``.
"""

import threading
import time
from unittest import mock

import sqlalchemy as sa

from consumer import exceptions as consumer_exceptions
from consumer import source as source_mod
from oslo_publish import exceptions
from oslo_publish import snapshot
from oslo_publish import snapshot_auth
from tests import base
from tests.functional import test_snapshot


def idle_transactions(engine):
    """Sessions of this test's database idle inside a transaction."""
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND state LIKE 'idle in transaction%'")).scalar()


class TestOrphanSnapshotPostgreSQL(test_snapshot.SnapshotTestMixin,
                                   base.BackendTestCase):
    BACKEND = 'postgresql'

    def setUp(self):
        super().setUp()
        self.conf.set_override('snapshot_timeout', 1.0, 'consumer')
        self.source = source_mod.RPCSnapshotSource(
            self.conf, self.stream, transport=self.rpc_transport)

    def refused(self, reason):
        return self.metrics.value('oslo_publish_snapshots_refused_total',
                                  stream=self.stream, reason=reason)

    def test_request_taken_up_after_its_deadline_is_refused(self):
        """A request delivered after its caller gave up opens nothing."""
        server = self.start_server()
        auth = snapshot_auth.request_auth(
            None, self.stream, ['items'], 'late-client',
            now=time.time() - 30, timeout=10)
        exc = self.assertRaises(exceptions.SnapshotError, self.call,
                                'snapshot_open', tables=['items'], auth=auth)
        self.assertIn('stopped waiting', str(exc))
        self.assertEqual(1, self.refused('late'))
        self.assertEqual(0, server.open_count())
        self.assertEqual(0, idle_transactions(self.engine))
        # A request within its deadline is served.
        auth = snapshot_auth.request_auth(
            None, self.stream, ['items'], 'late-client', timeout=30)
        opened = self.call('snapshot_open', tables=['items'], auth=auth)
        self.assertEqual(1, server.open_count())
        self.call('snapshot_close', snapshot_id=opened['snapshot_id'])

    def test_open_that_outlives_its_caller_is_closed(self):
        """The orphan: open delayed past the consumer's timeout.

        The stream lock is held (as by a relay catching up after a
        restart) while the consumer's ``snapshot_open`` times out; once
        the host gets the lock, it opens S, sees the deadline passed and
        closes it again: no transaction stays open, the consumer's next
        open is not refused ``client_busy`` and deltas are not delayed.
        """
        server = self.start_server()
        self.writer.transaction([self.writer.insert_item(1, 'a')])
        holder = self.make_relay()
        held, release = threading.Event(), threading.Event()

        def hold():
            with holder.lock_for_snapshot():
                held.set()
                release.wait(60)
        thread = threading.Thread(target=hold, daemon=True)
        thread.start()
        self.addCleanup(thread.join, 60)
        self.addCleanup(release.set)
        self.assertTrue(held.wait(30))
        with mock.patch.object(snapshot, 'DEADLINE_GRACE', 0.0):
            self.assertRaises(consumer_exceptions.SnapshotFailed,
                              self.source.open, ['items'])
            release.set()
            base.wait_for(lambda: self.refused('late') == 1, 30,
                          message='the late open was not refused')
        self.assertEqual(0, server.open_count())
        self.assertEqual(0, idle_transactions(self.engine))
        self.assertEqual(0, self.refused('client_busy'))
        # The same consumer (client name) gets its snapshot right away.
        with self.source.open(['items']) as snap:
            rows = dict(snap.rows('items'))
        self.assertEqual([(1,)], list(rows))
        self.assertEqual(0, server.open_count())
        # Deltas flow: the relay publishes the next transaction.
        self.writer.transaction([self.writer.insert_item(2, 'b')])
        self.relay.run_once()
        base.wait_for(lambda: [d for d in self.receiver.deltas()
                               if d['last_seq'] == 2], 30,
                      message='the delta after the orphan was not '
                              'published')

    def test_snapshot_without_a_page_request_is_closed(self):
        """Unread snapshots close after snapshot_first_page_timeout.

        (A consumer of an older release sends no deadline.)
        """
        self.conf.set_override('snapshot_first_page_timeout', 1.0,
                               'oslo_publish')
        server = self.start_server()
        self.writer.transaction([self.writer.insert_item(i, 'n%d' % i)
                                 for i in range(1, 20)])
        auth = snapshot_auth.request_auth(None, self.stream, [], 'old')
        self.assertNotIn('deadline', auth)
        read = self.call('snapshot_open', tables=['items'])
        self.call('snapshot_page', snapshot_id=read['snapshot_id'],
                  table='items', after=None)
        unread = self.call('snapshot_open', tables=['items'], auth=auth)
        self.assertEqual(2, server.open_count())
        base.wait_for(lambda: server.open_count() == 1, 15,
                      message='the unread snapshot stayed open')
        self.assertEqual(1, self.metrics.value(
            'oslo_publish_snapshots_orphaned_total', stream=self.stream))
        # The one being read stays (snapshot_idle_timeout applies).
        self.assertEqual(read['snapshot_id'],
                         list(server._sessions)[0])
        self.assertEqual(1, idle_transactions(self.engine))
        self.assertRaises(exceptions.SnapshotError, self.call,
                          'snapshot_page', snapshot_id=unread['snapshot_id'],
                          table='items', after=None)
        self.call('snapshot_close', snapshot_id=read['snapshot_id'])
        self.assertEqual(0, idle_transactions(self.engine))
