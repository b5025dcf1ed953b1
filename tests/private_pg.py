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

"""A private PostgreSQL cluster with ``wal_level = logical`` for tests.

The machine's PostgreSQL runs with ``wal_level = replica``, so the tests
of ``capture = logical`` start their own cluster (initdb in a temporary
directory, another port; :mod:`benchmarks.pgcluster`) once per test
class with :class:`LogicalPGMixin` (classes that change server settings)
or once per test process with :func:`shared_cluster` and
:class:`DatabaseFixture`, and fail loudly when it cannot start.
"""

import atexit
import contextlib
import os
import threading
import time

import fixtures
import sqlalchemy as sa

from benchmarks import pgcluster


#: The settings of every private cluster of the tests.
SETTINGS = (('wal_level', 'logical'),
            ('max_replication_slots', '20'),
            ('max_wal_senders', '20'),
            ('max_connections', '80'),
            ('fsync', 'off'))

_lock = threading.Lock()
_shared = None


def shared_cluster():
    """The private cluster of this test process (started on first call).

    For test classes that need no server settings of their own: one
    cluster per process (a stestr worker) instead of one per class; it
    is stopped and removed when the process exits.

    :raises RuntimeError: it cannot start (never a skip).
    """
    global _shared
    with _lock:
        if _shared is None:
            stack = contextlib.ExitStack()
            try:
                cluster = stack.enter_context(pgcluster.running(SETTINGS))
            except pgcluster.ClusterError as exc:
                stack.close()
                raise RuntimeError('cannot start the private PostgreSQL '
                                   'cluster with wal_level=logical: %s'
                                   % exc)
            atexit.register(stack.close)
            _shared = cluster
        return _shared


class DatabaseFixture(fixtures.Fixture):
    """A fresh database on the shared private cluster (logical WAL).

    The API of :class:`tests.base.DatabaseFixture` (``url``, ``engine``,
    ``backend``, ``name``) plus ``cluster`` (its
    :class:`benchmarks.pgcluster.Cluster`). The database's replication
    slots are dropped with it.
    """

    backend = 'postgresql'

    def _setUp(self):
        self.cluster = shared_cluster()
        self.name = 'test_%s' % os.urandom(5).hex()
        admin = sa.create_engine(self.cluster.url,
                                 isolation_level='AUTOCOMMIT')
        self.addCleanup(admin.dispose)
        with admin.connect() as conn:
            conn.exec_driver_sql('CREATE DATABASE %s' % self.name)
        self.addCleanup(_drop_database, admin, self.name)
        self.url = sa.engine.make_url(self.cluster.url).set(
            database=self.name).render_as_string(hide_password=False)
        self.engine = sa.create_engine(self.url)
        self.addCleanup(self.engine.dispose)


class LogicalPGMixin(object):
    """``setUpClass`` starts a private cluster: ``cls.pg_server_url``.

    ``cls.pg_cluster`` is its :class:`benchmarks.pgcluster.Cluster`
    (``restart()``, ``data``).

    ``cls.pg_settings`` adds server settings (e.g. a small
    ``max_slot_wal_keep_size``). Each test makes its databases with
    :meth:`private_database`.
    """

    pg_settings = ()

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        settings = dict((('wal_level', 'logical'),
                         ('max_replication_slots', '10'),
                         ('max_wal_senders', '10'),
                         ('max_connections', '60'),
                         ('fsync', 'off')))
        settings.update(dict(cls.pg_settings))
        cls._pg_stack = contextlib.ExitStack()
        try:
            cls.pg_cluster = cls._pg_stack.enter_context(
                pgcluster.running(tuple(settings.items())))
            cls.pg_server_url = cls.pg_cluster.url
        except pgcluster.ClusterError as exc:
            cls._pg_stack.close()
            raise RuntimeError('cannot start the private PostgreSQL '
                               'cluster with wal_level=logical: %s' % exc)

    @classmethod
    def tearDownClass(cls):
        cls._pg_stack.close()
        super().tearDownClass()

    def private_database(self):
        """A fresh database on the private cluster (dropped at cleanup).

        Its replication slots are dropped first: a slot whose reader just
        went away stays active a moment, and blocks ``DROP DATABASE``.
        """
        name = 'test_%s' % os.urandom(5).hex()
        admin = sa.create_engine(self.pg_server_url,
                                 isolation_level='AUTOCOMMIT')
        self.addCleanup(admin.dispose)
        with admin.connect() as conn:
            conn.exec_driver_sql('CREATE DATABASE %s' % name)
        self.addCleanup(_drop_database, admin, name)
        return sa.engine.make_url(self.pg_server_url).set(
            database=name).render_as_string(hide_password=False)


def _drop_database(admin, name, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with admin.connect() as conn:
                for slot, pid in conn.exec_driver_sql(
                        'SELECT slot_name, active_pid FROM '
                        'pg_replication_slots WHERE database = %(d)s',
                        {'d': name}).all():
                    if pid is not None:
                        conn.exec_driver_sql(
                            'SELECT pg_terminate_backend(%(p)s)', {'p': pid})
                        continue
                    conn.exec_driver_sql(
                        'SELECT pg_drop_replication_slot(%(s)s)', {'s': slot})
                conn.exec_driver_sql(
                    'DROP DATABASE IF EXISTS %s WITH (FORCE)' % name)
            return
        except sa.exc.DBAPIError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # the walsender is still exiting
