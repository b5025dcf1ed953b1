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


"""Waking the relay: a pipe for this process and its forks, NOTIFY.

A :class:`Waker` is a non-blocking pipe. :meth:`Waker.wake` writes a
byte; the relay thread waits on the read end (:meth:`Waker.wait`) and
drains it before each cycle, so every commit that arrived during a cycle
makes exactly one more cycle: the relay sends at once when idle and
batches only while busy. The pipe survives ``fork()``: a pre-fork
server's workers (``gunicorn --preload``) wake the relay thread of the
master that installed the middleware.

A standalone relay (``oslo-publish-relay``) on PostgreSQL also waits on a
``LISTEN`` connection (:class:`Listener`): the outbox sink of hosts with
``relay_in_process = false`` sends ``NOTIFY`` in the writing transaction,
delivered when it commits. Elsewhere a standalone relay polls, quickly
after activity and backing off to ``relay_poll_interval`` when idle.
"""

import os
import select

from oslo_log import log

LOG = log.getLogger(__name__)

#: First adaptive poll delay after activity of a relay that nothing
#: wakes (doubles up to ``relay_poll_interval`` while idle).
FAST_POLL = 0.005

_OWN = b'!'
#: Bytes read from the pipe at once.
_READ = 4096
_FOREIGN = b'f'


def channel(stream):
    """The PostgreSQL ``NOTIFY`` channel of ``stream`` (an identifier)."""
    return 'oslo_publish_%08x' % (hash_text(stream) & 0xffffffff)


def hash_text(text):
    """A stable (not per-process salted) 32-bit FNV-1a of ``text``."""
    value = 0x811c9dc5
    for byte in text.encode('utf-8'):
        value = ((value ^ byte) * 0x01000193) & 0xffffffff
    return value


class Waker(object):
    """A wake-up pipe shared by a process and the processes it forks."""

    def __init__(self):
        self._read, self._write = os.pipe()
        self._fds = (self._read, self._write)
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._pid = os.getpid()
        #: Set by :meth:`drain` when a wake-up came from another process
        #: (a fork): the waiting thread does not see those writers.
        self.foreign = False
        #: Set by :meth:`wake` in this process, cleared by :meth:`drain`:
        #: a wake-up came since (read without a system call).
        self.pending = False

    def wake(self):
        """Make the next (or current) :meth:`wait` return at once."""
        if os.getpid() == self._pid:
            self.pending = True
        try:
            os.write(self._write,
                     _OWN if os.getpid() == self._pid else _FOREIGN)
        except BlockingIOError:
            pass  # full: a wake-up is pending anyway
        except OSError as exc:
            LOG.debug('Waking the relay failed: %s', exc)

    def drain(self):
        """Forget the wake-ups so far; True when there was any.

        Reads until a read returns less than a full buffer (the pipe was
        emptied): one system call for the usual handful of bytes, each of
        which lets other threads take the interpreter lock first.
        """
        self.pending = False
        woken = False
        while True:
            try:
                data = os.read(self._read, _READ)
            except BlockingIOError:
                return woken
            except OSError:
                return woken
            if not data:
                return woken
            woken = True
            if _FOREIGN in data:
                self.foreign = True
            if len(data) < _READ:
                return woken

    def drain_pending(self):
        """:meth:`drain` when a wake-up may have come since the last one.

        Skips the read (a system call) when no wake-up of this process
        came since the last :meth:`drain` and none ever came from another
        process. A wake-up whose byte lands after that check stays in the
        pipe for the next :meth:`wait` and :meth:`drain`.
        """
        if self.pending or self.foreign:
            return self.drain()
        return False

    def wait(self, timeout, others=()):
        """Wait for a wake-up (or readable ``others``) up to ``timeout``.

        :returns: the ready file descriptors (empty after a timeout).
        """
        try:
            ready, _, _ = select.select([self._read] + list(others), [], [],
                                        max(0.0, timeout))
        except (OSError, ValueError):
            return []
        return ready

    def close(self):
        """Close the pipe (nothing may wake or wait on it afterwards)."""
        fds, self._fds = self._fds, ()
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass

    def __del__(self):
        self.close()


class Listener(object):
    """PostgreSQL ``LISTEN`` on the stream's channel (its own session).

    :param engine: the host database's Engine (PostgreSQL, psycopg2).
    """

    def __init__(self, engine, stream):
        self._engine = engine
        self._channel = channel(stream)
        self._conn = None

    def fileno(self):
        """The socket to select on, connecting when needed (or None)."""
        if self._conn is None:
            try:
                conn = self._engine.raw_connection()
                dbapi = conn.driver_connection
                dbapi.autocommit = True
                with dbapi.cursor() as cur:
                    cur.execute('LISTEN %s' % self._channel)
                self._conn = conn
            except Exception as exc:  # noqa: poll instead until it works
                LOG.debug('LISTEN failed, polling: %s', exc)
                return None
        return self._conn.driver_connection.fileno()

    def drain(self):
        """Consume the notifications received so far."""
        if self._conn is None:
            return
        dbapi = self._conn.driver_connection
        try:
            dbapi.poll()
            del dbapi.notifies[:]
        except Exception as exc:  # noqa: reconnect next time
            LOG.debug('LISTEN connection lost: %s', exc)
            self.close()

    def close(self):
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.invalidate()  # a LISTENing session never goes back
            conn.close()
        except Exception:  # noqa: best effort
            LOG.debug('Closing the LISTEN connection failed', exc_info=True)


def notify_statement(stream):
    """The SQL a PostgreSQL writer runs so its commit wakes relays."""
    return "NOTIFY %s" % channel(stream)
