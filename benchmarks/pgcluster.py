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

"""A private PostgreSQL cluster with ``wal_level = logical``.

The logical-decoding reference (:mod:`benchmarks.logical`) needs a
server setting a machine's own PostgreSQL usually does not have. The
suite never relies on it: :func:`cluster` initialises a cluster in a
temporary directory with the ``initdb`` of ``/usr/lib/postgresql/*/bin``
(or ``$PG_BINDIR``), starts it on a free port of 127.0.0.1 with
``-c wal_level=logical`` (as the ``postgres`` user when run as root,
which PostgreSQL refuses), yields its ``postgresql+psycopg2://`` URL (trust
authentication, database ``postgres``), then stops it and removes the
directory. It raises :class:`ClusterError` when it cannot start.
:func:`running` yields a :class:`Cluster` instead, whose
:meth:`~Cluster.restart` stops and starts the server (tests of a
database restart).
"""

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys

import sqlalchemy as sa

from benchmarks import janitor


class ClusterError(RuntimeError):
    """The private PostgreSQL cluster could not be set up."""


def bindir():
    """The directory of ``initdb`` and ``pg_ctl`` (newest version)."""
    found = os.environ.get('PG_BINDIR')
    if found:
        candidates = [found]
    else:
        def version(path):
            name = path.split(os.sep)[-3]
            return int(name) if name.isdigit() else 0
        candidates = sorted(glob.glob('/usr/lib/postgresql/*/bin'),
                            key=version, reverse=True)
    for path in candidates:
        if os.path.exists(os.path.join(path, 'initdb')):
            return path
    raise ClusterError('initdb not found in /usr/lib/postgresql/*/bin '
                       '(set PG_BINDIR)')


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _runner():
    """(uid, gid) to run the server binaries as (None: this process's)."""
    if os.geteuid() != 0:
        return None, None
    try:
        user = pwd.getpwnam('postgres')
    except KeyError:
        raise ClusterError('running as root and there is no postgres user '
                           'to run the private PostgreSQL cluster as')
    return user.pw_uid, user.pw_gid


def _run(args, uid, timeout=120):
    def demote():
        if uid is not None:
            os.setgid(_runner()[1])
            os.setuid(uid)
    got = subprocess.run(args, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True,
                         timeout=timeout, preexec_fn=demote)
    if got.returncode:
        raise ClusterError('%s failed (%d): %s' % (
            os.path.basename(args[0]), got.returncode, got.stdout[-2000:]))
    return got.stdout


_DEFAULTS = (('wal_level', 'logical'),
             ('max_replication_slots', '10'),
             ('max_wal_senders', '10'),
             ('max_connections', '40'),
             ('fsync', 'on'))


class Cluster(object):
    """A started private cluster: its ``url`` and ``data`` directory."""

    def __init__(self, url, data, bindir, uid, options, log):
        self.url = url
        self.data = data
        self._bindir = bindir
        self._uid = uid
        self._options = options
        self._log = log

    def pg_ctl(self, *args):
        return _run([os.path.join(self._bindir, 'pg_ctl'), '-D', self.data,
                     '-w', '-t', '60'] + list(args), self._uid)

    def restart(self, mode='fast'):
        """Stop the server (``fast``, ``immediate`` = crash) and start it.

        Every connection breaks; the data directory, the port and the
        replication slots stay.
        """
        self.pg_ctl('-m', mode, 'stop')
        self.pg_ctl('-l', self._log, '-o', self._options, 'start')


@contextlib.contextmanager
def cluster(settings=_DEFAULTS):
    """Yield the URL of a private, started cluster; stop it afterwards."""
    with running(settings) as handle:
        yield handle.url


@contextlib.contextmanager
def running(settings=_DEFAULTS):
    """Yield a started :class:`Cluster`; stop and remove it afterwards."""
    path = bindir()
    uid, gid = _runner()
    top = janitor.private_dir('bench_pg_')
    data = os.path.join(top, 'data')
    port = free_port()
    started = False
    try:
        if uid is not None:
            os.chown(top, uid, gid)
        _run([os.path.join(path, 'initdb'), '-D', data, '-U', 'postgres',
              '-A', 'trust', '-E', 'UTF8', '--no-sync'], uid)
        options = ' '.join(['-c %s=%s' % kv for kv in settings] +
                           ['-p %d' % port, '-k %s' % top,
                            "-c listen_addresses=127.0.0.1"])
        _run([os.path.join(path, 'pg_ctl'), '-D', data, '-w', '-t', '60',
              '-l', os.path.join(top, 'server.log'), '-o', options,
              'start'], uid)
        started = True
        url = 'postgresql+psycopg2://postgres@127.0.0.1:%d/postgres' % port
        _check(url, settings)
    except ClusterError as exc:
        log = _tail(os.path.join(top, 'server.log'))
        _stop(path, data, uid, started)
        shutil.rmtree(top, ignore_errors=True)
        raise ClusterError('private PostgreSQL cluster on port %d: %s\n%s'
                           % (port, exc, log))
    except BaseException:
        _stop(path, data, uid, started)
        shutil.rmtree(top, ignore_errors=True)
        raise
    try:
        yield Cluster(url, data, path, uid, options,
                      os.path.join(top, 'server.log'))
    finally:
        _stop(path, data, uid, started)
        shutil.rmtree(top, ignore_errors=True)


def _tail(log):
    if not os.path.exists(log):
        return ''
    with open(log) as f:
        return f.read()[-2000:]


def _check(url, settings):
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            level = conn.exec_driver_sql('SHOW wal_level').scalar()
    finally:
        engine.dispose()
    wanted = dict(settings).get('wal_level', level)
    if level != wanted:
        raise ClusterError('it runs with wal_level=%s, not %s'
                           % (level, wanted))


def _stop(path, data, uid, started):
    if not started:
        return
    try:
        _run([os.path.join(path, 'pg_ctl'), '-D', data, '-m', 'fast', '-w',
              'stop'], uid)
    except ClusterError as exc:
        print('stopping the private PostgreSQL cluster: %s' % exc,
              file=sys.stderr)


@contextlib.contextmanager
def database(server_url):
    """A fresh database on the cluster at ``server_url``, dropped after."""
    name = 'bench_%s' % os.urandom(5).hex()
    admin = sa.create_engine(server_url, isolation_level='AUTOCOMMIT')
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql('CREATE DATABASE %s' % name)
        url = sa.engine.make_url(server_url).set(database=name)
        yield url.render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.exec_driver_sql(
                'DROP DATABASE IF EXISTS %s WITH (FORCE)' % name)
    finally:
        admin.dispose()
