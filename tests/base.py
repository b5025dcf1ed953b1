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

"""Shared test fixtures: configuration, real databases, real broker.

Functional tests use the services of the machine. Their URLs come from
the environment, with defaults matching the development machine:

``OSLO_PUBLISH_TEST_PG_URL``
    admin URL of PostgreSQL (default
    ``postgresql+psycopg2://postgres@127.0.0.1:5432/test``)
``OSLO_PUBLISH_TEST_MYSQL_URL``
    admin URL of MariaDB/MySQL (default
    ``mysql+pymysql://root@127.0.0.1:3306/test``)
``OSLO_PUBLISH_TEST_TRANSPORT_URL``
    oslo.messaging URL of RabbitMQ (default
    ``rabbit://guest:guest@127.0.0.1:5672/``)

Every test works in a database of its own (created and dropped by
:class:`DatabaseFixture`) and an exchange of its own
(:class:`TransportFixture`), so runs cannot collide. A service that
cannot be reached fails the test with the service named; it is never
skipped.
"""

import logging
import os
import socket
import tempfile
import uuid

import fixtures
from oslo_config import cfg
from oslo_config import fixture as config_fixture
import sqlalchemy as sa
from sqlalchemy.engine import url as sa_url
import testtools

from benchmarks import janitor

PG_URL = os.environ.get(
    'OSLO_PUBLISH_TEST_PG_URL',
    'postgresql+psycopg2://postgres@127.0.0.1:5432/test')
MYSQL_URL = os.environ.get(
    'OSLO_PUBLISH_TEST_MYSQL_URL',
    'mysql+pymysql://root@127.0.0.1:3306/test')
TRANSPORT_URL = os.environ.get(
    'OSLO_PUBLISH_TEST_TRANSPORT_URL',
    'rabbit://guest:guest@127.0.0.1:5672/')

BACKENDS = ('sqlite', 'postgresql', 'mysql')


class ServiceUnavailable(AssertionError):
    """A service a functional test needs cannot be reached."""


def require_service(name, host, port, timeout=5.0):
    """Fail (never skip) when ``host:port`` does not accept connections."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise ServiceUnavailable(
            '%s is not reachable at %s:%s (%s); start it (see README) or '
            'point the OSLO_PUBLISH_TEST_* variables at it'
            % (name, host, port, exc)) from exc


def unique_name(prefix='op'):
    return '%s_%s' % (prefix, uuid.uuid4().hex[:12])


class DatabaseFixture(fixtures.Fixture):
    """A fresh, empty database of its own on ``backend``.

    Attributes after setUp: ``url`` (str), ``engine`` (an Engine on it),
    ``backend`` and ``name``.
    """

    def __init__(self, backend):
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError('unknown backend %r' % backend)
        self.backend = backend

    def _setUp(self):
        self.name = unique_name()
        if self.backend == 'sqlite':
            tmp = self.useFixture(fixtures.TempDir())
            self.url = 'sqlite:///%s' % os.path.join(
                tmp.path, self.name + '.sqlite')
        else:
            admin = sa_url.make_url(
                PG_URL if self.backend == 'postgresql' else MYSQL_URL)
            label = ('PostgreSQL' if self.backend == 'postgresql'
                     else 'MariaDB')
            require_service(label, admin.host or '127.0.0.1',
                            admin.port or (5432 if self.backend ==
                                           'postgresql' else 3306))
            admin_engine = sa.create_engine(admin,
                                            isolation_level='AUTOCOMMIT')
            with admin_engine.connect() as conn:
                conn.exec_driver_sql('CREATE DATABASE %s' % self.name)
            self.addCleanup(self._drop, admin_engine)
            self.url = admin.set(database=self.name).render_as_string(
                hide_password=False)
        self.engine = sa.create_engine(self.url)
        self.addCleanup(self.engine.dispose)

    def _drop(self, admin_engine):
        self.engine.dispose()
        with admin_engine.connect() as conn:
            if self.backend == 'postgresql':
                conn.exec_driver_sql(
                    'DROP DATABASE IF EXISTS %s WITH (FORCE)' % self.name)
            else:
                conn.exec_driver_sql('DROP DATABASE IF EXISTS %s'
                                     % self.name)
        admin_engine.dispose()


class TransportFixture(fixtures.Fixture):
    """RabbitMQ (or ``fake://``) with an exchange and topic of its own.

    Sets ``transport_url`` and ``control_exchange`` on ``conf``.
    Attributes: ``url``, ``exchange``, ``topic``.
    """

    def __init__(self, conf, url=None):
        super().__init__()
        self.conf = conf
        self.url = url or TRANSPORT_URL

    def _setUp(self):
        parsed = sa_url.make_url(self.url.replace('rabbit://', 'x://'))
        if self.url.startswith('rabbit://'):
            require_service('RabbitMQ', parsed.host or '127.0.0.1',
                            parsed.port or 5672)
        self.exchange = unique_name('opx')
        self.topic = unique_name('opt')
        self.conf.set_override('transport_url', self.url)
        self.conf.set_override('control_exchange', self.exchange)


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class RabbitNodeFixture(fixtures.Fixture):
    """A private RabbitMQ node, for tests that stop and start the broker.

    The shared broker on 5672 serves every other test running in
    parallel; stopping it would fail them. This fixture boots a node of
    its own (about 3 s) from the machine's RabbitMQ installation, on a
    free port, with its own data directory, and removes it afterwards.
    ``stop_app()`` / ``start_app()`` run ``rabbitmqctl stop_app`` /
    ``start_app`` on it. Needs root (the node runs as user rabbitmq).
    """

    def _setUp(self):
        import shutil
        import subprocess
        for tool in ('rabbitmqctl', 'runuser'):
            if shutil.which(tool) is None:
                raise ServiceUnavailable('%s not found: a private RabbitMQ '
                                         'node needs the RabbitMQ server '
                                         'installed' % tool)
        self._subprocess = subprocess
        self.port = _free_port()
        dist_port = _free_port()
        self.node = '%s@localhost' % unique_name('optest')
        self.base = janitor.private_dir('oslo-publish-rmq-')
        self.addCleanup(_rmtree, self.base)
        with open(os.path.join(self.base, 'rabbitmq.conf'), 'w') as f:
            f.write('listeners.tcp.local = 127.0.0.1:%d\n'
                    'loopback_users = none\n' % self.port)
        with open(os.path.join(self.base, 'env.conf'), 'w') as f:
            f.write('ERL_EPMD_ADDRESS=127.0.0.1\n')
        subprocess.run(['chown', '-R', 'rabbitmq', self.base], check=True)
        env = {
            'HOME': '/var/lib/rabbitmq',
            'PATH': os.environ.get('PATH', '/usr/sbin:/usr/bin:/bin'),
            'RABBITMQ_CONF_ENV_FILE': os.path.join(self.base, 'env.conf'),
            'RABBITMQ_CONFIG_FILE': os.path.join(self.base, 'rabbitmq.conf'),
            'RABBITMQ_NODENAME': self.node,
            'RABBITMQ_DIST_PORT': str(dist_port),
            'RABBITMQ_MNESIA_BASE': os.path.join(self.base, 'mnesia'),
            'RABBITMQ_LOG_BASE': os.path.join(self.base, 'log'),
            'RABBITMQ_PID_FILE': os.path.join(self.base, 'pid'),
            'RABBITMQ_ENABLED_PLUGINS_FILE': os.path.join(self.base,
                                                          'plugins'),
        }
        cmd = ['runuser', '-u', 'rabbitmq', '--', 'env']
        cmd += ['%s=%s' % kv for kv in sorted(env.items())]
        cmd += ['/usr/lib/rabbitmq/bin/rabbitmq-server', '-detached']
        subprocess.run(cmd, check=True, capture_output=True)
        self.addCleanup(self._ctl, 'stop')
        self.wait_up(60)
        self.url = 'rabbit://guest:guest@127.0.0.1:%d/' % self.port

    def _ctl(self, *args):
        return self._subprocess.run(
            ['rabbitmqctl', '-q', '-n', self.node] + list(args),
            capture_output=True, timeout=120, check=False)

    def _port_open(self):
        try:
            socket.create_connection(('127.0.0.1', self.port), 0.5).close()
            return True
        except OSError:
            return False

    def wait_up(self, timeout=60):
        wait_for(self._port_open, timeout=timeout, interval=0.1,
                 message='private RabbitMQ node %s did not listen on %d'
                 % (self.node, self.port))

    def stop_app(self):
        """``rabbitmqctl stop_app``: the broker refuses connections."""
        proc = self._ctl('stop_app')
        if proc.returncode:
            raise AssertionError('stop_app failed: %s' % proc.stderr)
        wait_for(lambda: not self._port_open(), timeout=30,
                 message='node %s still listening' % self.node)

    def start_app(self):
        """``rabbitmqctl start_app`` and wait until it listens again."""
        proc = self._ctl('start_app')
        if proc.returncode:
            raise AssertionError('start_app failed: %s' % proc.stderr)
        self.wait_up(60)

    def purge_queue(self, name):
        """``rabbitmqctl purge_queue``: drop the messages of ``name``."""
        proc = self._ctl('purge_queue', name)
        if proc.returncode:
            raise AssertionError('purge_queue %s failed: %s'
                                 % (name, proc.stderr))

    def delete_queues(self, names):
        """Delete queues of the node (best effort, missing ones too)."""
        for name in names:
            self._ctl('delete_queue', name)


class ConfFixture(config_fixture.Config):
    """A private ConfigOpts with every oslo.publish option registered."""

    def __init__(self):
        super().__init__(cfg.ConfigOpts())

    def setUp(self):
        super().setUp()
        from consumer import options as consumer_options
        from oslo_publish import options as host_options
        from oslo_messaging import transport
        host_options.register_opts(self.conf)
        consumer_options.register_opts(self.conf)
        self.conf.register_opts(transport._transport_opts)
        self.conf([], project='oslo_publish_tests',
                  default_config_files=[])
        self.tempdir = self.useFixture(fixtures.TempDir()).path
        self.conf.set_override('state_path', self.tempdir, 'consumer')
        # A test process runs many consumers one after another: freezing
        # the objects of one test would keep its cycles for the whole run
        # (the tests of the option turn it back on).
        self.conf.set_override('gc_freeze_after_resume', False, 'consumer')
        self.conf.set_override('gc_freeze_after_sync', False, 'consumer')
        self.conf.set_override('gc_tenure', False, 'consumer')


def _env_flag(name, default=True):
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in ('1', 'true', 'yes', 'on')


class OutputCaptureFixture(fixtures.Fixture):
    """Keep a passing test quiet: capture its logs, warnings and output.

    Log records (every level, every logger), warnings and whatever the
    code under test writes to ``sys.stdout``/``sys.stderr`` are kept
    per test and attached to the test's details, which the runner shows
    only when the test fails. ``OS_LOG_CAPTURE``, ``OS_STDOUT_CAPTURE``
    and ``OS_STDERR_CAPTURE`` (default on; ``0`` turns one off) follow
    the oslotest convention, for debugging a test interactively. The
    details are named ``test-stdout``/``test-stderr`` rather than
    ``stdout``/``stderr``: subunit-trace prints the latter even for a
    passing test.
    """

    def _setUp(self):
        if _env_flag('OS_LOG_CAPTURE'):
            self.useFixture(fixtures.FakeLogger(
                level=logging.DEBUG,
                format='%(asctime)s %(levelname)s %(name)s %(message)s'))
            self.useFixture(fixtures.WarningsCapture())
        if _env_flag('OS_STDOUT_CAPTURE'):
            out = self.useFixture(fixtures.StringStream('test-stdout')).stream
            self.useFixture(fixtures.MonkeyPatch('sys.stdout', out))
        if _env_flag('OS_STDERR_CAPTURE'):
            err = self.useFixture(fixtures.StringStream('test-stderr')).stream
            self.useFixture(fixtures.MonkeyPatch('sys.stderr', err))


class TestCase(testtools.TestCase):
    """Base test case: quiet output, a private config and a temp dir."""

    def setUp(self):
        super().setUp()
        self.output = self.useFixture(OutputCaptureFixture())
        self.conf_fixture = self.useFixture(ConfFixture())
        self.conf = self.conf_fixture.conf
        self.tmpdir = tempfile.mkdtemp()
        self.addCleanup(_rmtree, self.tmpdir)


def _rmtree(path):
    import shutil
    shutil.rmtree(path, ignore_errors=True)


class BackendTestCase(TestCase):
    """A test case bound to one database backend (``BACKEND``).

    Subclass it once per backend, e.g.::

        class _CaptureTests(object):
            def test_x(self): ...

        class TestCaptureSQLite(_CaptureTests, base.BackendTestCase):
            BACKEND = 'sqlite'
    """

    BACKEND = None

    def setUp(self):
        super().setUp()
        if self.BACKEND is None:
            self.skipTest('abstract backend test case')
        self.db = self.useFixture(DatabaseFixture(self.BACKEND))
        self.engine = self.db.engine


def table_rows(engine, tables):
    """Every row of ``tables``: ``{name: {primary-key tuple: row dict}}``.

    The host side of a convergence check: what a direct query sees.
    """
    out = {}
    with engine.connect() as conn:
        for table in tables:
            pk = [c.name for c in table.primary_key.columns]
            out[table.name] = {
                tuple(r._mapping[c] for c in pk): dict(r._mapping)
                for r in conn.execute(sa.select(table))}
    return out


def wait_for(predicate, timeout=30.0, interval=0.02, message=None):
    """Poll ``predicate`` until it returns a true value or time runs out.

    :returns: the true value.
    :raises AssertionError: with ``message`` after ``timeout`` seconds.
    """
    import time
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(message or 'condition not met within %ss'
                                 % timeout)
        time.sleep(interval)
