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

"""``capture = logical`` on PostgreSQL: operating it.

The retained WAL as a metric and in ``oslo-publish-status``; a real
restart of the database server while writers run (see
:mod:`tests.functional.test_logical_capture` for the pipeline tests).
"""

import contextlib
import io
import json
import os
import threading
import time

import fixtures
import oslo_messaging
from oslo_messaging import transport as transport_mod
import sqlalchemy as sa
from sqlalchemy import orm

import oslo_publish

from oslo_publish.cmd import status
from oslo_publish import outbox
from oslo_publish import metrics as metrics_mod
from oslo_publish import wire
from tests import base
from tests.functional import delivery
from tests.functional import test_logical_capture as lc

_GAUGE = 'oslo_publish_log_retained_bytes'


class TestRetainedLogPostgreSQL(lc._LogicalCase):

    def status_json(self):
        tmp = self.useFixture(fixtures.TempDir()).path
        path = os.path.join(tmp, 'status.conf')
        with open(path, 'w') as f:
            f.write('[database]\nconnection = %s\n' % self.url)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(err):
            code = status.main(['--config-file', path, '--json'])
        self.assertEqual((0, ''), (code, err.getvalue()))
        return dict((s['stream'], s) for s in json.loads(out.getvalue()))

    def gauge(self):
        return self.relay.metrics.registry.get_sample_value(
            _GAUGE, {'stream': self.stream})

    def write(self, first, count):
        with self.engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO items SELECT g, repeat('x', 200), 0, NULL, "
                "NULL FROM generate_series(%d, %d) g"
                % (first, first + count - 1))

    def test_retained_wal_is_measured_and_released(self):
        """Gauge and status grow while the stager is down, then fall."""
        self.start_relay()
        self.stager.lag_interval = 0.0
        self.write(1, 10)
        self.settle()
        base.wait_for(lambda: self.gauge() is not None, 30,
                      message='the retained-log gauge was never set')
        self.stager.stop()
        self.write(100, 2000)
        held = self.status_json()[self.stream]['log_retained_bytes']
        self.assertGreater(held, 2000 * 200)
        # Only grows while nothing reads the slot.
        self.assertLessEqual(held, self.stager.reader.lag())

        self.stager.start()
        self.settle()
        base.wait_for(
            lambda: self.status_json()[self.stream]['log_retained_bytes']
            < held / 10, 30, message='the slot did not release its WAL')
        base.wait_for(lambda: self.gauge() < held / 10, 30,
                      message='the gauge did not fall')
        rows, seqs = self.publisher.replay()
        self.assertEqual(self.table(), rows)
        self.assertEqual([1, 2], seqs)

    def test_status_without_a_slot_shows_a_dash(self):
        """A stream without a replication slot: the key is null."""
        self.start_relay()
        self.write(1, 1)
        self.settle()
        other = lc.make_conf(base.unique_name('other'))
        with self.engine.begin() as conn:
            conn.execute(outbox.streams.insert().values(
                stream=other.oslo_publish.stream, last_seq=0))
        got = self.status_json()
        self.assertIsNone(got[other.oslo_publish.stream][
            'log_retained_bytes'])
        self.assertIsInstance(got[self.stream]['log_retained_bytes'], int)


class _ServerRestart(object):
    """A restart of the database server while writers commit.

    The case provides ``restart_server(mode)`` (``fast``: a clean
    shutdown; ``immediate``: a crash) and ``server_started()`` (a value
    that grows with each start of the server).
    """

    def writer(self, number, stop, acked, errors):
        """Commits one insert + one update per transaction; retries."""
        i = 0
        while not stop.is_set():
            key = number * 1000000 + i
            try:
                with self.engine.begin() as conn:
                    conn.exec_driver_sql(
                        "INSERT INTO items VALUES (%d, 'w', 0, 1.5, 's')"
                        % key)
                    conn.exec_driver_sql(
                        'UPDATE items SET n = n + 1 WHERE id = %d'
                        % (number * 1000000))
            except sa.exc.DBAPIError:
                # The server is restarting: this commit may or may not
                # have happened; the table decides (the id is reused
                # only if it did not).
                errors.append(key)
                stop.wait(0.05)
                with contextlib.suppress(sa.exc.DBAPIError):
                    with self.engine.connect() as conn:
                        if conn.exec_driver_sql(
                                'SELECT 1 FROM items WHERE id = %d'
                                % key).first():
                            i += 1
                continue
            acked.append(key)
            i += 1

    def run_restart(self, mode):
        self.start_relay()
        stop = threading.Event()
        acked, errors = [], []
        threads = [threading.Thread(target=self.writer,
                                    args=(n, stop, acked, errors))
                   for n in (1, 2)]
        for t in threads:
            t.start()
        self.addCleanup(stop.set)
        base.wait_for(lambda: len(self.publisher.transactions) > 20, 60,
                      message='nothing published before the restart')
        started = self.server_started()
        self.restart_server(mode)
        self.assertGreater(self.server_started(), started)
        before = len(acked)
        base.wait_for(lambda: len(acked) > before + 20, 60,
                      message='writers did not resume after the restart')
        base.wait_for(lambda: len(self.publisher.transactions) > before,
                      60, message='nothing published after the restart')
        stop.set()
        for t in threads:
            t.join(60)
        self.settle()
        rows, seqs = self.publisher.replay()
        table = self.table()
        self.assertEqual(table, rows)                   # mirror == host
        self.assertEqual(list(range(1, len(seqs) + 1)), seqs)  # gapless
        # Nothing doubled: one published transaction per database
        # transaction (each insert is of a new id), and every
        # acknowledged commit is in the stream.
        inserted = [c['key'][0]
                    for seq in seqs
                    for c in self.publisher.transactions[seq]['changes']
                    if c['op'] == 'insert']
        self.assertEqual(len(inserted), len(set(inserted)))
        self.assertEqual(set(k for (k,) in table), set(inserted))
        self.assertLessEqual(set(acked), set(inserted))
        self.assertGreater(len(seqs), 40)

    def test_fast_restart_loses_and_doubles_nothing(self):
        """A clean shutdown under load (``pg_ctl -m fast``, SIGTERM)."""
        self.seed()
        self.run_restart('fast')

    def test_crash_restart_loses_and_doubles_nothing(self):
        """A crash (``-m immediate``, SIGKILL): the log may go back."""
        self.seed()
        self.run_restart('immediate')

    def seed(self):
        with self.engine.begin() as conn:
            for n in (1, 2):
                conn.exec_driver_sql(
                    "INSERT INTO items VALUES (%d, 'c', 0, NULL, NULL)"
                    % (n * 1000000))


class TestServerRestartPostgreSQL(_ServerRestart, lc._LogicalCase):
    """``pg_ctl restart`` of the server while writers commit."""

    def restart_server(self, mode):
        self.pg_cluster.restart(mode)

    def server_started(self):
        admin = sa.create_engine(self.pg_server_url)
        try:
            with admin.connect() as conn:
                return conn.exec_driver_sql(
                    'SELECT pg_postmaster_start_time()').scalar()
        finally:
            admin.dispose()


class _BrokerOutage(object):
    """RabbitMQ stopped during writes (as test_faults for session).

    The case provides ``catch_up()`` and ``wait_reading(handle)``.
    """

    def test_broker_outage_loses_and_duplicates_nothing(self):
        """Private RabbitMQ node stopped ~10s: seqs exact, rows all there.

        The writes are raw SQL on a connection of their own: the log, not
        a session, captures them.
        """
        node = self.useFixture(base.RabbitNodeFixture())
        self.conf.register_opts(transport_mod._transport_opts)
        delivery.durable_broker(self.conf)   # queues survive stop_app
        tf = self.useFixture(base.TransportFixture(self.conf, url=node.url))
        self.conf.set_override('topics', [tf.topic], 'oslo_publish')
        for name, value in (('relay_poll_interval', 0.1),
                            ('retry_max_backoff', 1.0),
                            ('snapshot_server', False)):
            self.conf.set_override(name, value, 'oslo_publish')
        transport = oslo_messaging.get_notification_transport(self.conf)
        self.addCleanup(transport.cleanup)
        receiver = self.useFixture(delivery.Receiver(transport, tf))
        metrics = metrics_mod.HostMetrics()
        metadata = sa.MetaData()
        sa.Table('items', metadata, autoload_with=self.engine)
        handle = oslo_publish.install(
            self.conf, orm.sessionmaker(bind=self.engine),
            metadata=metadata, transport=transport, metrics=metrics)
        self.addCleanup(handle.stop)
        self.wait_reading(handle)
        written, errors, during = [], [], []
        stop, outage = threading.Event(), threading.Event()

        def write():
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    with self.engine.begin() as conn:
                        conn.exec_driver_sql(
                            "INSERT INTO items VALUES (%d, 'n', 0, NULL, "
                            "'pw')" % n)
                except Exception as exc:  # noqa: asserted below
                    errors.append(exc)
                    return
                written.append(n)
                if outage.is_set():
                    during.append(n)
                stop.wait(0.05)

        writer = threading.Thread(target=write)
        writer.start()
        self.addCleanup(writer.join)
        self.addCleanup(stop.set)
        base.wait_for(lambda: len(set(receiver.seqs())) >= 5, 60)
        self.addCleanup(node.start_app)
        node.stop_app()
        outage.set()
        began = time.monotonic()
        base.wait_for(lambda: time.monotonic() - began >= 10.0
                      and len(during) >= 10, 30)
        node.start_app()
        outage.clear()
        count = len(written)
        base.wait_for(lambda: len(written) >= count + 5, 30)
        stop.set()
        writer.join()
        self.assertEqual([], errors)
        self.catch_up()
        base.wait_for(lambda: delivery.pending(self.engine, self.stream)
                      == 0, 60)
        total = delivery.last_seq(self.engine, self.stream)
        self.assertEqual(len(written), total)
        receiver.wait_seqs(total, 60)
        got = receiver.transactions()
        delivery.assert_gapless(self, got, total)
        by_seq = dict((t['seq'], t) for t in got)
        keys = sorted(c['key'][0] for tx in by_seq.values()
                      for c in tx['changes'])
        self.assertEqual(written, keys)
        self.assertTrue(all(c['op'] == wire.INSERT and
                            'secret' not in c['after']
                            for tx in got for c in tx['changes']))
        self.assertGreater(metrics.value(
            'oslo_publish_broker_retries_total', stream=self.stream), 0)


class TestBrokerOutageLogical(_BrokerOutage, lc._LogicalCase):

    def wait_reading(self, handle):
        pass   # the slot made by setUp keeps every write from now on
