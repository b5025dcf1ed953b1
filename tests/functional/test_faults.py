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

"""Faults: a host killed after commit, a broker stopped during writes.

Both use the real capture (``oslo_publish.install``) on a sessionmaker.
"""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import oslo_messaging
import sqlalchemy as sa
from sqlalchemy import orm

import oslo_publish
from oslo_publish import wire
from tests import base
from tests.functional import delivery

_HOST = textwrap.dedent('''
    import sys
    from oslo_config import cfg
    import sqlalchemy as sa
    from sqlalchemy import orm
    import oslo_publish
    from oslo_publish import options

    url, stream = sys.argv[1], sys.argv[2]
    conf = cfg.ConfigOpts()
    options.register_opts(conf)
    conf([], project='killed_host', default_config_files=[])
    for name, value in (('tables', ['items']), ('stream', stream),
                        ('relay_in_process', False),
                        ('snapshot_server', False)):
        conf.set_override(name, value, 'oslo_publish')
    engine = sa.create_engine(url)
    maker = orm.sessionmaker(bind=engine)
    oslo_publish.install(conf, maker)
    items = sa.Table('items', sa.MetaData(), autoload_with=engine)
    with maker() as session:
        for n in (1, 2, 3):
            session.execute(items.insert().values(id=n, name='n%d' % n))
        session.commit()
    print('committed', flush=True)
    sys.stdin.read()
''')


def _items(metadata):
    return sa.Table(
        'items', metadata,
        sa.Column('id', sa.Integer, primary_key=True, autoincrement=False),
        sa.Column('name', sa.String(64)),
        mysql_engine='InnoDB')


class _FaultTests(delivery.RelayTestMixin):

    def setUp(self):
        super().setUp()
        self.items = _items(sa.MetaData())
        self.items.metadata.create_all(self.engine)

    def test_killed_host_delta_published_by_later_relay(self):
        """A host SIGKILLed after commit loses nothing: a relay sends it."""
        script = os.path.join(self.tmpdir, 'host.py')
        with open(script, 'w') as f:
            f.write(_HOST)
        proc = subprocess.Popen(
            [sys.executable, script, self.db.url, self.stream],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            cwd=os.path.dirname(os.path.dirname(os.path.dirname(
                os.path.abspath(__file__)))))
        self.addCleanup(proc.wait)
        self.addCleanup(proc.kill)
        self.assertEqual(b'committed\n', proc.stdout.readline())
        os.kill(proc.pid, signal.SIGKILL)
        self.assertEqual(-signal.SIGKILL, proc.wait())
        self.assertEqual(1, delivery.pending(self.engine, self.stream))
        self.assertEqual(1, self.make_relay().run_once())
        self.assertEqual([1], self.receiver.wait_seqs(1))
        changes = self.receiver.transactions()[0]['changes']
        self.assertEqual([[1], [2], [3]], [c['key'] for c in changes])
        self.assertEqual({'id': 2, 'name': 'n2'}, changes[1]['after'])


class TestFaultsSQLite(_FaultTests, base.BackendTestCase):
    BACKEND = 'sqlite'


class TestFaultsMySQL(_FaultTests, base.BackendTestCase):
    BACKEND = 'mysql'


class TestFaultsPostgreSQL(_FaultTests, base.BackendTestCase):
    BACKEND = 'postgresql'

    def test_broker_outage_loses_and_duplicates_nothing(self):
        """RabbitMQ stopped ~10s during writes: seqs stay exact.

        The broker is a private RabbitMQ node (base.RabbitNodeFixture), not
        the shared one: ``rabbitmqctl stop_app`` on it for about ten
        seconds, ``start_app`` always run again in a cleanup.
        """
        node = self.useFixture(base.RabbitNodeFixture())
        self.tf = self.useFixture(base.TransportFixture(self.conf,
                                                        url=node.url))
        self.conf.set_override('topics', [self.tf.topic], 'oslo_publish')
        self.transport = oslo_messaging.get_notification_transport(
            self.conf)
        self.addCleanup(self.transport.cleanup)
        self.receiver = self.useFixture(
            delivery.Receiver(self.transport, self.tf))
        for name, value in (('tables', ['items']),
                            ('stream', self.stream),
                            ('relay_poll_interval', 0.1),
                            ('retry_max_backoff', 1.0),
                            ('snapshot_server', False)):
            self.conf.set_override(name, value, 'oslo_publish')
        maker = orm.sessionmaker(bind=self.engine)
        handle = oslo_publish.install(self.conf, maker,
                                      metadata=self.items.metadata,
                                      transport=self.transport,
                                      metrics=self.metrics)
        self.addCleanup(handle.stop)
        written, errors = [], []
        stop = threading.Event()
        during = []

        def write():
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    with maker() as session:
                        session.execute(self.items.insert().values(
                            id=n, name='n%d' % n))
                        session.commit()
                except Exception as exc:  # noqa: recorded, asserted below
                    errors.append(exc)
                    return
                written.append(n)
                if outage.is_set():
                    during.append(n)
                stop.wait(0.05)

        outage = threading.Event()
        writer = threading.Thread(target=write)
        writer.start()
        self.addCleanup(writer.join)
        self.addCleanup(stop.set)
        base.wait_for(lambda: len(set(self.receiver.seqs())) >= 5, 30)
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
        base.wait_for(lambda: delivery.pending(self.engine, self.stream)
                      == 0, 60)
        total = delivery.last_seq(self.engine, self.stream)
        self.assertEqual(len(written), total)
        self.receiver.wait_seqs(total, 60)
        got = self.receiver.transactions()
        delivery.assert_gapless(self, got, total)
        keys = sorted(c['key'][0] for tx in {t['seq']: t for t in got}
                      .values() for c in tx['changes'])
        self.assertEqual(written, keys)
        self.assertTrue(all(c['op'] == wire.INSERT for tx in got
                            for c in tx['changes']))
        self.assertGreater(self.metric('oslo_publish_broker_retries_total'),
                           0)
