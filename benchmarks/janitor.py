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

"""Private servers whose test or benchmark process was killed.

The tests and benchmarks start private servers (a PostgreSQL cluster
with ``wal_level = logical``, MariaDB with a binlog, RabbitMQ nodes) in
temporary directories and stop them when they end. A process killed
with SIGKILL ends nothing: a detached server goes on running and its
directory stays. :func:`private_dir` makes such a directory and writes
in it an ``owner`` file (the process id and its start time, so a reused
process id is not taken for the owner); before the first directory of
a process it reaps the directories whose owner is gone: it stops the
servers whose pid files it finds there (only a process whose command
line names the directory: a reused pid is left alone) and removes the
directory.
"""

import os
import shutil
import signal
import tempfile
import threading
import time

OWNER = 'owner'
#: Where the private servers write their pid, relative to the directory.
PID_FILES = ('data/postmaster.pid', 'mariadb.pid', 'pid', 'n0/pid',
             'n1/pid', 'n2/pid')
PREFIXES = ('bench_pg_', 'oslo_publish_mariadb_', 'oslo-publish-rmq-',
            'oslo-publish-cluster-')

_lock = threading.Lock()
_reaped = False


def start_time(pid):
    """The start time of process ``pid`` (clock ticks), or None."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            stat = f.read()
    except (OSError, ValueError):
        return None
    # The command name may hold spaces and parentheses: count from the
    # last ')'. Field 22 of stat(5) is the 20th after it.
    return stat.rsplit(')', 1)[1].split()[19]


def _running(pid):
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (OSError, ValueError, IndexError):
        return False


def _cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return f.read().replace(b'\0', b' ').decode(errors='replace')
    except OSError:
        return ''


def owner_alive(top):
    """Whether the process that made ``top`` still runs (True if unknown)."""
    try:
        with open(os.path.join(top, OWNER)) as f:
            pid, started = f.read().split()
        pid = int(pid)
    except (OSError, ValueError):
        return True
    return start_time(pid) == started


def _server_pids(top):
    for name in PID_FILES:
        try:
            with open(os.path.join(top, name)) as f:
                pid = int(f.readline().strip())
        except (OSError, ValueError):
            continue
        if top in _cmdline(pid):
            yield pid


def reap(tmp=None, timeout=30.0):
    """Stop and remove the private directories of dead owners.

    :returns: the directories removed.
    """
    tmp = tmp or tempfile.gettempdir()
    removed = []
    for name in sorted(os.listdir(tmp)):
        top = os.path.join(tmp, name)
        if (not name.startswith(PREFIXES) or not os.path.isdir(top)
                or owner_alive(top)):
            continue
        pids = list(_server_pids(top))
        for pid in pids:
            # SIGQUIT is PostgreSQL's immediate shutdown; the others die.
            try:
                os.kill(pid, signal.SIGQUIT if 'postgres' in _cmdline(pid)
                        else signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while any(_running(p) for p in pids) and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in pids:
            if _running(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        shutil.rmtree(top, ignore_errors=True)
        removed.append(top)
    return removed


def private_dir(prefix):
    """A new temporary directory owned by this process (reaps first)."""
    global _reaped
    with _lock:
        if not _reaped:
            _reaped = True
            reap()
    top = tempfile.mkdtemp(prefix=prefix)
    with open(os.path.join(top, OWNER), 'w') as f:
        f.write('%d %s\n' % (os.getpid(), start_time(os.getpid())))
    return top
