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

"""A staging batch in two round trips (MariaDB with PyMySQL).

The generic :class:`~oslo_publish.logcapture.staging.Stager` step takes
eight round trips per batch published straight from the binlog (the
lock of the positions row, the visibility check's three on a second
connection, the stream row's ``SKIP LOCKED`` lock, the pending check,
the two ``UPDATE`` and ``COMMIT``). The stager shares its interpreter
with the binlog reader's decoding, the relay and the host's writers, so
each round trip also waits for the GIL again: at 200 transactions a
second this made most of the commit -> cache latency (p50 20 ms against
PostgreSQL's 4.7 ms, where :mod:`.staging_pg` sends two).

:class:`Batch` sends the same statements, in the same transaction, in
two round trips (multi-statement packets) on a connection of its own:

1. ``START TRANSACTION WITH CONSISTENT SNAPSHOT``, the lock of the
   stream's positions row (the staged position P), ``SHOW STATUS LIKE
   'binlog_snapshot_%'`` (the binlog file and offset the transaction's
   snapshot corresponds to: the visibility check, see
   :meth:`~.binlog_cut.CutMixin.visible_in`), the stream row ``FOR
   UPDATE SKIP LOCKED`` (MariaDB 10.6+, MySQL 8.0.1+) and whether a
   staged entry waits for the relay. The snapshot is taken after the
   batch was read from the binlog, so when it already covers the batch
   (nearly always) no other check is made; the pending check reads that
   snapshot, which can only make it report an entry the relay has since
   published (the batch is then staged: never the other way round);
2. the ``UPDATE`` of ``last_seq`` (a batch published straight from the
   log), or the multi-row ``INSERT`` of the outbox entries, the
   ``UPDATE`` of the position and ``COMMIT``.

The connection is PyMySQL's, made with the engine URL's arguments (as
the engine's dialect would make it) plus ``CLIENT.MULTI_STATEMENTS``,
in ``REPEATABLE READ`` (the consistent snapshot needs it), autocommit on
(transactions are explicit). Nothing about durability changes: the
commit is the server's own and the reader confirms the position only
after it returned.
"""

from oslo_log import log

from oslo_publish import outbox
from oslo_publish.logcapture import binlog_cut
from oslo_publish.logcapture import staging_pg

LOG = log.getLogger(__name__)

_COLUMNS = staging_pg._COLUMNS

#: Payload bytes above which the outbox INSERT is sent on its own
#: (PyMySQL's ``executemany`` splits it under its statement limit), not
#: in the packet with the position's UPDATE and COMMIT.
INLINE_BYTES = 512 * 1024


def usable(engine):
    """True when :class:`Batch` can stage on ``engine``."""
    dialect = engine.dialect
    return dialect.name in ('mysql', 'mariadb') and \
        dialect.driver == 'pymysql'


def _connect(engine):
    """A PyMySQL connection like the engine's, multi-statement enabled."""
    import pymysql
    from pymysql.constants import CLIENT
    args, kwargs = engine.dialect.create_connect_args(engine.url)
    kwargs = dict(kwargs)
    kwargs['client_flag'] = kwargs.get('client_flag', 0) | \
        CLIENT.MULTI_STATEMENTS
    kwargs['autocommit'] = True
    conn = pymysql.connect(*args, **kwargs)
    try:
        with conn.cursor() as cur:
            cur.execute('SET SESSION TRANSACTION ISOLATION LEVEL '
                        'REPEATABLE READ')
    except BaseException:
        conn.close()
        raise
    return conn


def _results(cur):
    """Every result set of the last multi-statement ``execute``."""
    out = [cur.fetchall()]
    while cur.nextset():
        out.append(cur.fetchall())
    return out


class Batch(object):
    """Stages batches on one kept connection (see the module docstring).

    The interface of :class:`.staging_pg.Batch`; :meth:`begin`'s
    ``snapshot`` is the binlog place ``(file, number, offset)`` of
    :func:`~.binlog_cut.binlog_place` (None when the server reports
    none), and :meth:`snapshot` returns None: a check after the first
    is made by the reader on a connection of its own (a new consistent
    snapshot needs a new transaction).

    :param engine: the host database (MariaDB/MySQL, PyMySQL).
    :param stream: the stream name.
    """

    def __init__(self, engine, stream):
        self._engine = engine
        self._stream = stream
        self._conn = None
        self._cursor = None
        self._skip_locked = None
        prep = engine.dialect.identifier_preparer
        positions = prep.format_table(outbox.log_positions)
        self._outbox = prep.format_table(outbox.outbox)
        self._streams = prep.format_table(outbox.streams)
        self._positions = positions
        self._insert_head = 'INSERT INTO %s (%s) VALUES ' % (
            self._outbox, ', '.join(_COLUMNS))
        self._row = '(' + ', '.join(['%s'] * len(_COLUMNS)) + ')'
        self._set_position_sql = (
            'UPDATE %s SET position = %%s, updated_at = %%s '
            'WHERE stream = %%s; COMMIT' % positions)
        self._record_sql = (
            'UPDATE %s SET last_seq = %%s, updated_at = %%s '
            'WHERE stream = %%s; ' % self._streams) + self._set_position_sql

    def _lock_sql(self):
        sql = ('START TRANSACTION WITH CONSISTENT SNAPSHOT; '
               'SELECT position FROM {positions} WHERE stream = %(stream)s '
               'FOR UPDATE; '
               "SHOW STATUS LIKE 'binlog\\_snapshot\\_%%'; ")
        if self._skip_locked:
            # The pending flag: an entry staged and unpublished
            # (unnumbered, or numbered after last_seq), in the snapshot.
            sql += (
                'SELECT last_seq, epoch FROM {streams} '
                'WHERE stream = %(stream)s FOR UPDATE SKIP LOCKED; '
                'SELECT EXISTS (SELECT 1 FROM {outbox} o WHERE o.stream = '
                '%(stream)s AND o.seq IS NULL) OR EXISTS (SELECT 1 FROM '
                '{outbox} o JOIN {streams} s ON s.stream = o.stream '
                'WHERE o.stream = %(stream)s AND o.seq > s.last_seq)')
        return sql.format(positions=self._positions, streams=self._streams,
                          outbox=self._outbox)

    def _cur(self):
        if self._cursor is None:
            from oslo_publish.logcapture import direct
            conn = _connect(self._engine)
            if self._skip_locked is None:
                self._skip_locked = direct.skip_locked(self._engine.dialect)
                if not self._skip_locked:
                    LOG.info('Stream %s: the server has no FOR UPDATE SKIP '
                             'LOCKED; every batch is staged in the outbox',
                             self._stream)
            self._conn = conn
            self._cursor = conn.cursor()
        return self._cursor

    def begin(self):
        """The transaction, its snapshot and the locks: a ``Locked``.

        ``last_seq`` and ``epoch`` are the stream's, with its row locked
        too, when that row was free (``FOR UPDATE SKIP LOCKED``: never
        waits); None when another transaction holds it (a relay cycle,
        the snapshot server's watermark) or the stream has no row yet.

        :raises LookupError: the stream has no positions row (the
            transaction is rolled back).
        """
        cur = self._cur()
        try:
            cur.execute(self._lock_sql(), {'stream': self._stream})
            results = _results(cur)
        except BaseException:
            self.abort()
            raise
        # START TRANSACTION, positions, status[, streams, pending]
        position = results[1]
        if not position:
            self.abort()
            raise LookupError('stream %s has no log position row'
                              % self._stream)
        status = {row[0].lower(): row[1] for row in results[2]}
        path = status.get('binlog_snapshot_file')
        offset = status.get('binlog_snapshot_position')
        snapshot = (binlog_cut.binlog_place(path, int(offset))
                    if path and offset is not None else None)
        last_seq = epoch = None
        pending = False
        if self._skip_locked and results[3]:
            last_seq, epoch = results[3][0]
            pending = bool(results[4][0][0])
        return staging_pg.Locked(position[0][0] or '', snapshot, last_seq,
                                 epoch, pending)

    def snapshot(self):
        """None: a later visibility check is the reader's own."""
        return None

    def _run(self, sql, args):
        cur = self._cur()
        try:
            cur.execute(sql, args)
            _results(cur)
        except BaseException:
            self.abort()
            raise

    def commit(self, rows, position, now, last_seq=None):
        """Insert ``rows`` (dicts), move the position to ``position``.

        One round trip, ending with ``COMMIT``. The entries are left
        for the relay to number (``last_seq`` is accepted for the
        interface of :class:`.staging_pg.Batch` and not used).
        """
        cur = self._cur()
        parts, args = [], []
        large = sum(len(row['payload']) for row in rows) > INLINE_BYTES
        if rows and not large:
            parts.append(self._insert_head + ','.join(
                [self._row] * len(rows)) + '; ')
            for row in rows:
                args.extend(row[c] for c in _COLUMNS)
        parts.append(self._set_position_sql)
        args.extend((position, now, self._stream))
        try:
            if rows and large:
                # PyMySQL splits a multi-row INSERT below
                # max_allowed_packet: more round trips, any size.
                cur.executemany(self._insert_head + self._row, [
                    tuple(row[c] for c in _COLUMNS) for row in rows])
            cur.execute(''.join(parts), args)
            _results(cur)
        except BaseException:
            self.abort()
            raise

    def record(self, position, now, last_seq):
        """Move ``last_seq`` and the position together, and ``COMMIT``.

        For a batch published straight from the log (the stream lock
        held since :meth:`begin`): one round trip, before the reader
        confirms the position.
        """
        self._run(self._record_sql, (last_seq, now, self._stream,
                                     position, now, self._stream))

    def rollback(self):
        """End the transaction without writing (nothing new to stage)."""
        self._run('ROLLBACK', None)

    def abort(self):
        """Roll back (best effort) and drop the connection."""
        self._cursor = None
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.rollback()
        except Exception:  # noqa: the connection is dropped anyway
            LOG.debug('Rolling back a staging batch failed', exc_info=True)
        try:
            conn.close()
        except Exception:  # noqa: best effort
            LOG.debug('Dropping the staging connection failed',
                      exc_info=True)

    def close(self):
        """Disconnect (between transactions only)."""
        cursor, self._cursor = self._cursor, None
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            cursor.close()
            conn.close()
        except Exception:  # noqa: a broken connection
            LOG.debug('Closing the staging connection failed',
                      exc_info=True)
