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

"""A staging batch in two round trips (PostgreSQL with psycopg2).

The generic :class:`~oslo_publish.logcapture.staging.Stager` step takes
six round trips per batch (``BEGIN``, the lock of the positions row, the
visibility check, the ``INSERT``, the position's ``UPDATE``,
``COMMIT``). With the relay, the writers and the log reader sharing
one interpreter, every round trip also waits for the GIL again, so the
count, not the database work, makes most of the staging latency.

:class:`Batch` sends the same statements, in the same transaction, in
two round trips on a connection of its own in driver autocommit (the
transaction control sent explicitly, as the relay's lock transaction
does):

1. ``BEGIN``, then ``SELECT position, pg_current_snapshot() ... FOR
   UPDATE``: the lock of the stream's positions row, the staged
   position P and, in the same statement, a snapshot for the
   visibility check (taken when the statement starts: if it waited for
   the lock it is older, so it sees less, and the check only waits
   longer; it never passes a transaction it should not);
2. the multi-row ``INSERT`` of the outbox entries, the ``UPDATE`` of
   the position and ``COMMIT``.

Nothing about durability changes: the commit is the server's own
(``synchronous_commit`` as configured) and the slot is still confirmed
only after it returned.
"""

import collections

from oslo_log import log

from oslo_publish import outbox
from oslo_publish.relay import numbering

LOG = log.getLogger(__name__)

_COLUMNS = ('stream', 'txid', 'log_position', 'committed_at', 'payload',
            'xid')


class Locked(collections.namedtuple(
        'Locked', 'position snapshot last_seq epoch pending')):
    """What :meth:`Batch.begin` read with its locks.

    ``position``: the staged position ('' before the first);
    ``snapshot``: a ``pg_current_snapshot()`` text; ``last_seq`` and
    ``epoch``: the stream's, None unless its row is locked too;
    ``pending``: staged entries wait for the relay (with the row locked).
    """

    @property
    def stream_locked(self):
        return self.last_seq is not None


def usable(engine):
    """True when :class:`Batch` can stage on ``engine``."""
    dialect = engine.dialect
    return dialect.name == 'postgresql' and dialect.driver == 'psycopg2'


class Batch(object):
    """Stages batches on one kept connection (see the module docstring).

    :param engine: the host database (PostgreSQL, psycopg2).
    :param stream: the stream name.
    """

    def __init__(self, engine, stream):
        self._engine = engine
        self._stream = stream
        self._conn = None
        prep = engine.dialect.identifier_preparer
        positions = prep.format_table(outbox.log_positions)
        self._outbox = prep.format_table(outbox.outbox)
        self._insert_head = 'INSERT INTO %s (%s) VALUES ' % (
            self._outbox, ', '.join(_COLUMNS))
        self._row = '(' + ', '.join(['%s'] * len(_COLUMNS)) + ')'
        streams = prep.format_table(outbox.streams)
        # The stream row through a LATERAL join so that its lock, its
        # last_seq and its epoch come from ONE SKIP LOCKED read; the
        # pending flag is true when an entry is staged and unpublished
        # (unnumbered, or numbered after last_seq): the two index
        # ranges of oslo_publish_outbox_pending.
        self._lock_sql = (
            'BEGIN ISOLATION LEVEL READ COMMITTED; '
            'SELECT p.position, pg_current_snapshot()::text, '
            's.last_seq, s.epoch, s.last_seq IS NOT NULL AND ('
            'EXISTS (SELECT 1 FROM {outbox} o WHERE o.stream = '
            '%(stream)s AND o.seq IS NULL) OR '
            'EXISTS (SELECT 1 FROM {outbox} o WHERE o.stream = '
            '%(stream)s AND o.seq > s.last_seq)) '
            'FROM {positions} p LEFT JOIN LATERAL ('
            'SELECT last_seq, epoch FROM {streams} '
            'WHERE stream = %(stream)s FOR UPDATE SKIP LOCKED) s ON true '
            'WHERE p.stream = %(stream)s FOR UPDATE OF p'.format(
                outbox=self._outbox, positions=positions,
                streams=streams))
        self._number_sql = numbering.number_all_sql(outbox.outbox,
                                                    engine.dialect) + '; '
        self._snapshot_sql = 'SELECT pg_current_snapshot()::text'
        self._set_position_sql = (
            'UPDATE %s SET position = %%s, updated_at = %%s '
            'WHERE stream = %%s; COMMIT' % positions)
        self._record_sql = (
            'UPDATE %s SET last_seq = %%s, updated_at = %%s '
            'WHERE stream = %%s; ' % streams) + self._set_position_sql
        self._cursor = None

    def _cur(self):
        if self._cursor is None:
            conn = self._engine.raw_connection()
            try:
                dbapi = conn.driver_connection
                dbapi.autocommit = True
                self._cursor = dbapi.cursor()
            except BaseException:
                conn.invalidate()
                raise
            self._conn = conn
        return self._cursor

    def begin(self):
        """``BEGIN`` and the locks: a :class:`Locked`.

        ``last_seq`` and ``epoch`` are the stream's, with its row locked
        too, when that row was free (``FOR UPDATE SKIP LOCKED``: never
        waits); None when another transaction holds it (a relay cycle,
        the snapshot server's watermark) or the stream has no row yet.

        :raises LookupError: the stream has no positions row (the
            transaction is rolled back).
        """
        cur = self._cur()
        try:
            cur.execute(self._lock_sql, {'stream': self._stream})
            row = cur.fetchone()
        except BaseException:
            self.abort()
            raise
        if row is None:
            self.abort()
            raise LookupError('stream %s has no log position row'
                              % self._stream)
        return Locked(row[0] or '', row[1], row[2], row[3], bool(row[4]))

    def snapshot(self):
        """A new ``pg_current_snapshot()`` text, inside the transaction."""
        cur = self._cur()
        try:
            cur.execute(self._snapshot_sql)
            return cur.fetchone()[0]
        except BaseException:
            self.abort()
            raise

    def commit(self, rows, position, now, last_seq=None):
        """Insert ``rows`` (dicts), move the position to ``position``.

        One round trip, ending with ``COMMIT``.

        :param last_seq: the ``last_seq`` :meth:`begin` returned: the
            stream lock is held, so every unnumbered entry of the stream
            is numbered in the same transaction (None: left to the
            relay).
        """
        cur = self._cur()
        try:
            parts = []
            if rows:
                values = b','.join(
                    cur.mogrify(self._row, tuple(row[c] for c in _COLUMNS))
                    for row in rows)
                parts.append(self._insert_head.encode() + values + b'; ')
                if last_seq is not None:
                    parts.append(cur.mogrify(self._number_sql, {
                        'last_seq': last_seq, 'stream': self._stream}))
            parts.append(cur.mogrify(self._set_position_sql,
                                     (position, now, self._stream)))
            cur.execute(b''.join(parts))
        except BaseException:
            self.abort()
            raise

    def record(self, position, now, last_seq):
        """Move ``last_seq`` and the position together, and ``COMMIT``.

        For a batch published straight from the log (the stream lock
        held since :meth:`begin`): one round trip, the server's own
        durability (``synchronous_commit`` as configured), before the
        slot is confirmed.
        """
        cur = self._cur()
        try:
            cur.execute(self._record_sql, (last_seq, now, self._stream,
                                           position, now, self._stream))
        except BaseException:
            self.abort()
            raise

    def rollback(self):
        """End the transaction without writing (nothing new to stage)."""
        cur = self._cur()
        try:
            cur.execute('ROLLBACK')
        except BaseException:
            self.abort()
            raise

    def abort(self):
        """Roll back (best effort) and drop the connection."""
        cursor, self._cursor = self._cursor, None
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            cursor.execute('ROLLBACK')
        except Exception:  # noqa: the connection is dropped anyway
            LOG.debug('Rolling back a staging batch failed', exc_info=True)
        try:
            conn.invalidate()
        except Exception:  # noqa: best effort
            LOG.debug('Dropping the staging connection failed',
                      exc_info=True)

    def close(self):
        """Give the connection back (between transactions only)."""
        cursor, self._cursor = self._cursor, None
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            cursor.close()
            conn.driver_connection.autocommit = False
            conn.close()
        except Exception:  # noqa: a broken connection
            LOG.debug('Closing the staging connection failed',
                      exc_info=True)
            try:
                conn.invalidate()
            except Exception:  # noqa: best effort
                pass
