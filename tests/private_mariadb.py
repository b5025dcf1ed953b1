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

"""A private MariaDB server with a row binlog, for the binlog tests.

The machine's MariaDB has no binlog and must not be reconfigured, so
binlog capture is tested against a server of its own: a datadir made by
``mariadb-install-db`` in a temporary directory, ``mariadbd`` started on
a free port with ``log_bin``, ``binlog_format = ROW``,
``binlog_row_metadata = FULL`` and a ``server_id``. One server per test
process (a stestr worker), started on first use (about two seconds) and
stopped when the process exits (also when it is killed: the server gets
SIGTERM as its parent dies). :class:`DatabaseFixture` gives each test a
fresh database on it. A server that cannot start is an error, never a
skip.

Override the programs with ``OSLO_PUBLISH_TEST_MARIADBD`` and
``OSLO_PUBLISH_TEST_MARIADB_INSTALL_DB``.
"""

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import fixtures
import sqlalchemy as sa

from benchmarks import janitor
from tests import base

MARIADBD = os.environ.get('OSLO_PUBLISH_TEST_MARIADBD') or \
    shutil.which('mariadbd') or '/usr/sbin/mariadbd'
INSTALL_DB = os.environ.get('OSLO_PUBLISH_TEST_MARIADB_INSTALL_DB') or \
    shutil.which('mariadb-install-db') or '/usr/bin/mariadb-install-db'
START_TIMEOUT = 60.0

_lock = threading.Lock()
_server = None


class StartError(AssertionError):
    """The private MariaDB server cannot be started."""


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _die_with_parent():
    # PR_SET_PDEATHSIG = 1: SIGTERM the server when the test process dies.
    try:
        ctypes.CDLL('libc.so.6', use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


class Server(object):
    """One running private server.

    :ivar port: its TCP port on 127.0.0.1.
    :ivar url: ``mysql+pymysql://root@127.0.0.1:<port>/`` (no database).
    :ivar datadir: its data directory (the binlog files are there).
    """

    BINLOG = 'binlog'

    def __init__(self):
        self.root = janitor.private_dir('oslo_publish_mariadb_')
        self.datadir = os.path.join(self.root, 'data')
        # Its own temporary directory: nothing else cleaning /tmp can
        # take a temporary table from under it.
        self.tmpdir = os.path.join(self.root, 'tmp')
        self.socket = os.path.join(self.root, 'mariadb.sock')
        self.log = os.path.join(self.root, 'error.log')
        self.proc = None
        self.port = None
        self.url = None
        #: How many times mariadbd was started (restarts included).
        self.starts = 0

    def _install(self):
        os.makedirs(self.tmpdir, exist_ok=True)
        result = subprocess.run(
            [INSTALL_DB, '--no-defaults', '--datadir=%s' % self.datadir,
             '--tmpdir=%s' % self.tmpdir,
             '--user=%s' % _user(), '--auth-root-authentication-method=normal',
             '--skip-test-db'],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        if result.returncode != 0:
            output = result.stdout.decode(errors='replace')
            raise StartError('mariadb-install-db failed (%d): %s'
                             % (result.returncode, output[-2000:]))

    def args(self):
        return [
            MARIADBD, '--no-defaults', '--datadir=%s' % self.datadir,
            '--port=%d' % self.port, '--bind-address=127.0.0.1',
            '--socket=%s' % self.socket, '--tmpdir=%s' % self.tmpdir,
            '--pid-file=%s' % os.path.join(self.root, 'mariadb.pid'),
            '--log-error=%s' % self.log, '--user=%s' % _user(),
            '--log-bin=%s' % os.path.join(self.datadir, self.BINLOG),
            '--binlog-format=ROW', '--binlog-row-image=FULL',
            '--binlog-row-metadata=FULL', '--server-id=1',
            '--character-set-server=utf8mb4',
            '--collation-server=utf8mb4_general_ci',
            '--max-allowed-packet=256M', '--skip-name-resolve',
            '--innodb-buffer-pool-size=64M', '--innodb-log-file-size=96M',
            '--innodb-flush-log-at-trx-commit=2', '--sync-binlog=0',
            '--performance-schema=OFF', '--max-connections=200',
        ]

    def _launch(self):
        self.proc = subprocess.Popen(
            self.args(), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        self.starts += 1

    def start(self):
        self._install()
        for attempt in range(3):
            self.port = _free_port()
            self._launch()
            if self._wait_ready():
                break
            self.stop_process()
        else:
            raise StartError('the private MariaDB server did not start: %s'
                             % self.error_log()[-3000:])
        self.url = 'mysql+pymysql://root@127.0.0.1:%d/' % self.port
        engine = sa.create_engine(self.url + '?charset=utf8mb4')
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql('CREATE DATABASE IF NOT EXISTS test')
        finally:
            engine.dispose()
        return self

    def _wait_ready(self):
        import pymysql
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                pymysql.connect(host='127.0.0.1', port=self.port,
                                user='root', password='',
                                connect_timeout=1).close()
                return True
            except pymysql.err.OperationalError:
                time.sleep(0.1)
        return False

    def error_log(self):
        try:
            with open(self.log, errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def stop_process(self):
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def restart(self, mode='fast'):
        """Stop the server and start it again on the same port and data.

        ``fast``: SIGTERM (a clean shutdown); ``immediate``: SIGKILL (a
        crash: InnoDB and the binlog recover at start). Every connection
        breaks.
        """
        proc = self.proc
        if mode == 'immediate':
            proc.kill()
            proc.wait(60)
        else:
            self.stop_process()
        # The port of the old process may take a moment to be free.
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            self._launch()
            if self._wait_ready():
                return
            self.stop_process()
            if time.monotonic() > deadline:
                raise StartError('the private MariaDB server did not '
                                 'restart: %s' % self.error_log()[-3000:])
            time.sleep(0.2)

    def stop(self):
        self.stop_process()
        shutil.rmtree(self.root, ignore_errors=True)


def _user():
    import pwd
    return pwd.getpwuid(os.getuid()).pw_name


def server():
    """The private server of this process (started on first call)."""
    global _server
    with _lock:
        if _server is None:
            srv = Server()
            try:
                srv.start()
            except BaseException:
                srv.stop()
                raise
            atexit.register(srv.stop)
            _server = srv
        return _server


class DatabaseFixture(fixtures.Fixture):
    """A fresh database on the private binlog server.

    Attributes after setUp: ``server``, ``name``, ``url``
    (``charset=utf8mb4``) and ``engine``; ``backend`` is ``'mysql'``
    (the API of :class:`tests.base.DatabaseFixture`).
    """

    backend = 'mysql'

    def _setUp(self):
        self.server = server()
        self.name = base.unique_name('bl')
        # Pre-ping: a test may restart the server under the pool.
        admin = sa.create_engine(self.server.url + '?charset=utf8mb4',
                                 isolation_level='AUTOCOMMIT',
                                 pool_pre_ping=True)
        self.addCleanup(admin.dispose)
        with admin.connect() as conn:
            conn.exec_driver_sql('CREATE DATABASE %s' % self.name)
        self.addCleanup(self._drop, admin)
        self.url = '%s%s?charset=utf8mb4' % (self.server.url, self.name)
        self.engine = sa.create_engine(self.url)
        self.addCleanup(self.engine.dispose)

    def _drop(self, admin):
        self.engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql('DROP DATABASE IF EXISTS %s' % self.name)
