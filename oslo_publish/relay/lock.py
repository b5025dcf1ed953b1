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


"""The stream lock: what serialises every relay of a stream.

PostgreSQL and MariaDB/MySQL: ``SELECT ... FOR UPDATE`` of the stream's
``oslo_publish_streams`` row in a READ COMMITTED transaction L. SQLite: a
process lock plus an ``flock`` on :func:`lock_file_path`. The stream row
also holds the stream's epoch (:func:`read_epoch`).

A :class:`StreamLock` of PostgreSQL or MariaDB/MySQL keeps two
connections of its own across relay cycles (L, and W for the numbering
commit), set to READ COMMITTED once: no pool checkout, ping or isolation
reset per cycle. They are dropped after a database error and after a fork
(:meth:`StreamLock.forget`: the child never touches the parent's
sessions).
"""

import contextlib
import fcntl
import os
import re
import threading

from oslo_log import log
import sqlalchemy as sa

from oslo_publish import outbox
from oslo_publish.relay import numbering
from oslo_publish import wire

LOG = log.getLogger(__name__)

_STREAMS = outbox.streams

_process_locks = {}
_process_locks_guard = threading.Lock()

#: Connections inherited over a fork: kept referenced, never used or
#: closed (closing would end the parent's database sessions).
_inherited = []


def _process_lock(engine):
    """SQLite: one lock per database file in this process.

    Other databases need none (the row lock serialises threads and
    processes alike): a no-op context manager is returned.
    """
    if engine.dialect.name != 'sqlite':
        return contextlib.nullcontext()
    key = engine.url.render_as_string(hide_password=True)
    with _process_locks_guard:
        return _process_locks.setdefault(key, threading.Lock())


def lock_file_path(engine, stream):
    """SQLite: the file whose ``flock`` serialises the stream's relays.

    ``<database file>.oslo-publish-<stream>.lock`` beside the database
    file; None for an in-memory database (one process only: the process
    lock is enough) and for other databases.
    """
    if engine.dialect.name != 'sqlite':
        return None
    database = engine.url.database or ''
    if database.startswith('file:'):
        if 'mode=memory' in database:
            return None
        database = database[len('file:'):].split('?', 1)[0]
    if database in ('', ':memory:'):
        return None
    safe = re.sub(r'[^A-Za-z0-9_.-]', '_', stream)
    return '%s.oslo-publish-%s.lock' % (os.path.abspath(database), safe)


@contextlib.contextmanager
def _file_lock(path):
    """Hold an exclusive ``flock`` on ``path`` (created when missing)."""
    if path is None:
        yield
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        fd = os.open(path, os.O_RDONLY)  # made by another user: enough
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def _immediate(conn):
    """SQLite: ``BEGIN IMMEDIATE`` ... ``COMMIT`` on an autocommit conn."""
    # Driver-level autocommit, so that these statements are the only
    # transaction control pysqlite sees.
    conn.exec_driver_sql('BEGIN IMMEDIATE')
    try:
        yield
        conn.exec_driver_sql('COMMIT')
    except BaseException:
        conn.exec_driver_sql('ROLLBACK')
        raise


def read_epoch(engine, stream):
    """The stream's epoch as committed (None when the stream is unknown).

    :param engine: the host database's Engine.
    """
    with engine.connect() as conn:
        return conn.execute(sa.select(_STREAMS.c.epoch).where(
            _STREAMS.c.stream == stream)).scalar()


class Held(object):
    """The held stream lock: ``conn`` to read on, ``last_seq``, ``epoch``.

    From :meth:`StreamLock.hold` (direct delivery) ``conn`` is the lock
    transaction itself and every write goes on it. From
    :meth:`StreamLock.hold_relay`, writes go through :meth:`assigning`
    (committed at once) and :meth:`marking`.
    """

    def __init__(self, conn, last_seq, epoch, lock=None):
        self.conn = conn
        self.last_seq = last_seq
        self.epoch = epoch
        self._lock = lock
        #: Set once the lock transaction was committed (the lock is then
        #: released; see :meth:`write_and_commit`).
        self.committed = False
        #: Set when the last write was left in L's open transaction, for
        #: the lock's next round trip to commit (:meth:`write_and_commit`
        #: with ``defer``).
        self.deferred = False
        #: The entries read with the lock (``hold_relay(claim=...)``):
        #: ``(id, seq, txid, committed_at, payload)`` in seq order.
        self.claimed = None

    @property
    def can_commit_with(self):
        """True when :meth:`write_and_commit` saves a round trip."""
        return self._lock is not None and self._lock.explicit

    def write_and_commit(self, sql, params, defer=False):
        """Run driver-level ``sql`` in L and commit L, in one round trip.

        Only as the last thing a cycle does: the lock is released.
        PostgreSQL (:attr:`StreamLock.explicit`) only.

        :param defer: another cycle follows at once: send ``sql`` and the
            ``COMMIT`` with the lock's next round trip instead
            (:meth:`StreamLock.defer`); L stays open, holding the lock,
            until then. Only while a thread keeps the connections.
        """
        if defer and self._lock.keep:
            self._lock.defer(self.conn, sql, params)
            self.deferred = True
        else:
            self._lock.write_and_commit(self.conn, sql, params)
        self.committed = True

    def assigning(self):
        """Context: a connection whose writes are committed on exit."""
        return self._lock.assigning(self.conn)

    def marking(self):
        """Context: the connection to mark published entries on."""
        return self._lock.marking(self.conn)


class StreamLock(object):
    """Serialises everything that assigns ``stream``'s sequence numbers.

    PostgreSQL and MariaDB/MySQL: ``SELECT ... FOR UPDATE`` of the
    stream's row in a READ COMMITTED transaction (set on this connection
    only; MariaDB's default REPEATABLE READ is not used). SQLite: a
    process lock plus an ``flock`` on :func:`lock_file_path` (several
    processes on one database file), and for :meth:`hold` the database
    write lock of ``BEGIN IMMEDIATE``. The row is inserted when missing
    (a concurrent insert is tolerated), with a new epoch.

    :ivar epoch: the stream's epoch as last read under the lock (None
        before the first hold).
    """

    def __init__(self, engine, stream):
        self._engine = engine
        self._stream = stream
        self._sqlite = engine.dialect.name == 'sqlite'
        self._plock = _process_lock(engine)
        # Threads of this process holding the lock, and the connections
        # kept for it (guarded by this lock).
        self._local = threading.Lock()
        self._lock_path = lock_file_path(engine, stream)
        self._row_ready = False
        self._conns = {}
        self._pid = os.getpid()
        self.epoch = None
        # A write left in L's open transaction, sent with its COMMIT at
        # the head of L's next round trip: (L, driver sql, params) or
        # None.
        self._deferred = None
        #: Keep the connections between holds (set while a relay or
        #: direct delivery thread runs; otherwise each goes back to the
        #: pool after its hold).
        self.keep = False
        where = _STREAMS.c.stream == stream
        self._lock_query = (sa.select(_STREAMS.c.last_seq, _STREAMS.c.epoch)
                            .where(where))
        self._lock_for_update = self._lock_query.with_for_update()
        self._set_last_seq = (_STREAMS.update().where(where)
                              .values(last_seq=sa.bindparam('seq'),
                                      updated_at=sa.bindparam('now')))
        self._set_epoch = (_STREAMS.update().where(where)
                           .values(epoch=sa.bindparam('epoch')))

    @property
    def engine(self):
        return self._engine

    def _ensure_row(self):
        where = _STREAMS.c.stream == self._stream
        with self._engine.connect() as conn:
            found = conn.execute(sa.select(_STREAMS.c.stream)
                                 .where(where)).first()
            conn.rollback()
            if found is None:
                try:
                    with conn.begin():
                        conn.execute(_STREAMS.insert().values(
                            stream=self._stream, last_seq=0,
                            epoch=wire.new_epoch(),
                            updated_at=numbering.utcnow()))
                except sa.exc.IntegrityError:
                    LOG.debug('Stream row %s was created concurrently',
                              self._stream)
        self._row_ready = True

    def _read_row(self, conn, for_update):
        """``(last_seq, epoch)``; a missing row or epoch is created."""
        query = self._lock_for_update if for_update else self._lock_query
        row = conn.execute(query).first()
        if row is None:
            raise _RowMissing('the row of stream %s is missing' % self._stream)
        last_seq, epoch = row
        if epoch is None:
            epoch = self.renew_epoch(conn)
        self.epoch = epoch
        return last_seq, epoch

    def renew_epoch(self, conn):
        """Give the stream a new epoch (written on ``conn``, in L).

        On PostgreSQL the transaction then waits for its WAL flush at its
        commit (L otherwise does not): a new epoch is never lost.
        """
        epoch = wire.new_epoch()
        if self.explicit:
            conn.exec_driver_sql('SET LOCAL synchronous_commit TO ON')
        conn.execute(self._set_epoch, {'epoch': epoch})
        LOG.warning('Stream %(stream)s starts epoch %(epoch)s',
                    {'stream': self._stream, 'epoch': epoch})
        self.epoch = epoch
        return epoch

    @contextlib.contextmanager
    def _serialised(self):
        self._check_pid()
        with self._local, self._plock, _file_lock(self._lock_path):
            if not self._row_ready:
                self._ensure_row()
            yield

    # ------------------------------------------------------ connections

    def _check_pid(self):
        if self._pid != os.getpid():
            self.forget()

    def forget(self):
        """After a fork: drop the parent's connections without using them."""
        _inherited.extend(self._conns.values())
        self._conns = {}
        self._deferred = None  # the parent's transaction, not ours
        self._pid = os.getpid()
        self._local = threading.Lock()

    @property
    def explicit(self):
        """True when :meth:`hold_relay` sends the transaction control.

        PostgreSQL: L is in driver autocommit and the relay sends
        ``BEGIN`` with the lock's ``SELECT ... FOR UPDATE`` and ``COMMIT``
        with the cycle's last write (:meth:`write_and_commit`), one round
        trip each instead of separate ones for ``BEGIN`` and ``COMMIT``.
        Only with psycopg2, which sends several statements with client-side
        parameters in one round trip.
        """
        dialect = self._engine.dialect
        return dialect.name == 'postgresql' and dialect.driver == 'psycopg2'

    @property
    def autocommit_writes(self):
        """True when :meth:`assigning` runs each statement on its own.

        PostgreSQL: W is in autocommit, so that a numbering ``UPDATE`` is
        one round trip instead of three (``BEGIN``, the statement,
        ``COMMIT``); each statement must then be all-or-nothing by itself
        (:meth:`Relay.assign <oslo_publish.relay.Relay.assign>` guards
        it).
        """
        return self._engine.dialect.name == 'postgresql'

    def _conn(self, name):
        """A kept READ COMMITTED connection (PostgreSQL, MariaDB/MySQL)."""
        conn = self._conns.get(name)
        if conn is None or conn.closed or conn.invalidated:
            conn = self._engine.connect()
            level = 'READ COMMITTED'
            if (name == 'write' and self.autocommit_writes) or \
                    name == 'explicit':
                level = 'AUTOCOMMIT'
            conn.execution_options(isolation_level=level)
            self._conns[name] = conn
        return conn

    def _drop(self, name):
        if name == 'explicit':
            self._deferred = None  # rolled back with the session
        conn = self._conns.pop(name, None)
        if conn is None:
            return
        try:
            conn.invalidate()
            conn.close()
        except Exception:  # noqa: it is broken already
            LOG.debug('Closing a broken relay connection failed',
                      exc_info=True)

    def close(self):
        """Close the kept connections (the relay stopped)."""
        with self._local:
            for name, conn in list(self._conns.items()):
                self._conns.pop(name)
                try:
                    conn.close()
                except Exception:  # noqa: best effort at shutdown
                    LOG.debug('Closing relay connection %s failed', name,
                              exc_info=True)

    @contextlib.contextmanager
    def _kept(self, name):
        """A kept connection's transaction; dropped on a database error."""
        conn = self._conn(name)
        try:
            with conn.begin():
                yield conn
        except sa.exc.DBAPIError:
            self._drop(name)
            raise
        finally:
            if not self.keep and self._conns.get(name) is conn:
                del self._conns[name]
                conn.close()

    # ------------------------------------------------------------- hold

    @contextlib.contextmanager
    def hold(self):
        """Yield a :class:`Held` inside ONE lock transaction.

        The transaction commits when the block ends normally and rolls
        back when it raises (direct delivery: numbers are given and
        ``last_seq`` moved in the same transaction).
        """
        with self._serialised():
            if self._sqlite:
                with self._engine.connect() as conn:
                    conn.execution_options(isolation_level='AUTOCOMMIT')
                    with _immediate(conn):
                        yield Held(conn, *self._read_row(conn, False))
                return
            with self._kept('lock') as conn:
                yield Held(conn, *self._locked_row(conn))

    def _locked_row(self, conn):
        try:
            return self._read_row(conn, True)
        except _RowMissing:
            # The database was rebuilt underneath: the next hold makes a
            # new stream row (with a new epoch).
            self._row_ready = False
            raise

    @contextlib.contextmanager
    def hold_relay(self, claim=None):
        """Yield a :class:`Held` for a relay cycle (the lock held).

        :param claim: PostgreSQL (:attr:`explicit`) only: ``(sql,
            params)`` of :meth:`claim_sql`, sent instead of the plain
            lock: the entries it read are :attr:`Held.claimed`.

        PostgreSQL, MariaDB/MySQL: ``conn`` is the lock transaction L
        (READ COMMITTED: every read sees what was committed before it);
        :meth:`Held.marking` writes in L, committed on exit (rolled back
        when the block raises). SQLite: ``conn`` reads in autocommit and
        every write is a short ``BEGIN IMMEDIATE`` transaction (holding
        the database write lock for the whole cycle would block them).
        """
        with self._serialised():
            if self._sqlite:
                with self._engine.connect() as conn:
                    conn.execution_options(isolation_level='AUTOCOMMIT')
                    try:
                        row = self._read_row(conn, False)
                    except _RowMissing:
                        self._row_ready = False
                        raise
                    yield Held(conn, *row, lock=self)
                return
            if self.explicit:
                with self._kept('explicit') as conn:
                    with self._explicit(conn, claim) as held:
                        yield held
                return
            if claim is not None:
                raise ValueError('claim needs explicit transaction control')
            with self._kept('lock') as conn:
                yield Held(conn, *self._locked_row(conn), lock=self)

    @contextlib.contextmanager
    def _explicit(self, conn, claim=None):
        """L with the transaction control sent by the relay (PostgreSQL).

        ``BEGIN`` travels with the lock's ``SELECT ... FOR UPDATE``; the
        block's end sends ``COMMIT`` unless :meth:`Held.write_and_commit`
        did; anything raised rolls back (a failing ``ROLLBACK`` drops the
        connection, which ends the transaction too). With ``claim``
        (:meth:`claim_sql`) the same round trip first numbers the next
        entries in a transaction of its own and reads the batch with the
        lock.

        L commits without waiting for its WAL flush (``SET LOCAL
        synchronous_commit TO OFF``): what it writes (entries marked
        published, ``last_seq``) may be lost by a crash of the database
        server, and only so as a whole and together with nothing
        numbered after it (the numbering commits on W, with the server's
        own setting, and its flush covers every commit written before
        it). A renewed epoch waits for the flush (:meth:`renew_epoch`).
        Losing a marking is the state of a relay that died after the
        broker confirmed: the entries are republished with their numbers
        and content, and a relay that saw ``last_seq`` go back starts a
        new epoch.
        """
        try:
            sql, params = claim or (_BEGIN_SQL + _LOCK_SQL,
                                    {'stream': self._stream})
            deferred = self._take_deferred(conn)
            if deferred is not None:
                # The previous cycle's marking, still in L: committed
                # first, in the same round trip.
                sql = deferred[0] + '; COMMIT; ' + sql
                params = dict(deferred[1], **params)
            if claim is None:
                rows = [conn.exec_driver_sql(sql, params).first()]
            else:
                rows = conn.exec_driver_sql(sql, params).fetchall()
            row = rows[0] if rows else None
            if row is None:
                self._row_ready = False
                raise _RowMissing('the row of stream %s is missing'
                                  % self._stream)
            last_seq, epoch = row[0], row[1]
            if epoch is None:
                epoch = self.renew_epoch(conn)
            self.epoch = epoch
            held = Held(conn, last_seq, epoch, lock=self)
            if claim is not None:
                held.claimed = [tuple(row[2:]) for row in rows
                                if row[2] is not None]
            yield held
            if not held.committed:
                conn.exec_driver_sql('COMMIT')
        except BaseException:
            try:
                conn.exec_driver_sql('ROLLBACK')
            except Exception:  # noqa: closing the session ends it too
                LOG.debug('Rolling back the relay lock failed',
                          exc_info=True)
                self._drop('explicit')
            raise

    def claim_sql(self, number_sql, batch_sql):
        """The relay's first round trip of a cycle (PostgreSQL, psycopg2).

        In ONE round trip on L: a transaction that takes the lock, runs
        ``number_sql`` (:data:`numbering.NUMBER_NEXT_SQL`) and commits
        with the server's ``synchronous_commit`` (the numbers are
        durable before anything is published), then L's transaction as
        :meth:`hold_relay` begins it, whose ``batch_sql``
        (:data:`numbering.BATCH_SQL`) takes the lock again and reads the
        batch with ``last_seq`` and the epoch. Another relay taking the
        lock in between finds the entries numbered (and publishes them
        with their numbers); the batch read under the lock afterwards
        leaves out whatever it marked.
        """
        return ('BEGIN ISOLATION LEVEL READ COMMITTED; %s; %s; COMMIT; %s%s'
                % (_LOCK_SQL, number_sql, _BEGIN_SQL, batch_sql))

    def write_and_commit(self, conn, sql, params):
        """``sql`` then ``COMMIT`` on L in one round trip (PostgreSQL)."""
        conn.exec_driver_sql(sql + '; COMMIT', params)

    def defer(self, conn, sql, params):
        """Run ``sql`` in L (``conn``) and commit L with its next round trip.

        L stays open and keeps the lock until then: the next
        :meth:`hold_relay` (or :meth:`flush`) sends ``sql; COMMIT``
        ahead of its own statements. Lost with L's session when that
        fails: for the marking that is the state of a relay that died
        after the broker confirmed (the entries are published again with
        their numbers).
        """
        self._deferred = (conn, sql, params)

    def _take_deferred(self, conn):
        """The deferred ``(sql, params)`` if ``conn`` is still its L.

        A write deferred on a session that is gone (closed, invalidated,
        replaced) went with it: it is never sent on another one, which
        would run it without the lock.
        """
        deferred, self._deferred = self._deferred, None
        if deferred is None or deferred[0] is not conn or conn.closed or \
                conn.invalidated:
            return None
        return deferred[1:]

    @property
    def deferred(self):
        """True while a write waits in L's open transaction."""
        return self._deferred is not None

    def flush(self):
        """Commit a deferred write now (one round trip; no-op without)."""
        with self._serialised():
            conn = self._conns.get('explicit')
            if self._deferred is None or conn is None:
                self._deferred = None
                return
            with self._kept('explicit') as kept:
                deferred = self._take_deferred(conn)
                if deferred is not None and kept is conn:
                    self.write_and_commit(conn, *deferred)

    @contextlib.contextmanager
    def assigning(self, conn):
        """A write committed on exit: SQLite on ``conn``, else on W.

        W is a connection of its own, so the numbers are durable before
        anything is published while L keeps the lock. On PostgreSQL each
        statement on W commits by itself (:attr:`autocommit_writes`).
        """
        if self._sqlite:
            with _immediate(conn):
                yield conn
            return
        with self._kept('write') as other:
            yield other

    @contextlib.contextmanager
    def marking(self, conn):
        """SQLite: a short transaction on ``conn``; else L (``conn``)."""
        if self._sqlite:
            with _immediate(conn):
                yield conn
        else:
            yield conn

    def set_last_seq(self, conn, seq):
        conn.execute(self._set_last_seq,
                     {'seq': seq, 'now': numbering.utcnow()})

    def read_last_seq(self):
        """``last_seq`` as last committed, without taking the lock."""
        return self.read_position()[0]

    def read_position(self):
        """``(last_seq, epoch)`` as last committed, without the lock."""
        with self._engine.connect() as conn:
            row = conn.execute(self._lock_query).first()
        if row is None:
            return 0, self.epoch
        if row[1] is not None:
            self.epoch = row[1]
        return row[0] or 0, row[1] or self.epoch


#: PostgreSQL: how :meth:`StreamLock.hold_relay` begins L (the same
#: round trip as the lock).
_BEGIN_SQL = ('BEGIN ISOLATION LEVEL READ COMMITTED; '
              'SET LOCAL synchronous_commit TO OFF; ')

#: PostgreSQL: the lock of :meth:`StreamLock.hold_relay` as driver SQL.
_LOCK_SQL = ('SELECT last_seq, epoch FROM oslo_publish_streams '
             'WHERE stream = %(stream)s FOR UPDATE')


class _RowMissing(RuntimeError):
    """The stream's row is gone (the database was rebuilt)."""
