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

"""The middleware's own tables: the outbox and the stream positions.

Both live in the host's database, in their own SQLAlchemy ``MetaData``
(never the host's), created and upgraded by ``oslo-publish-manage
upgrade`` with their own alembic version table
(:data:`VERSION_TABLE`).

``oslo_publish_outbox``
    One row per committed transaction that changed allow-listed tables,
    written in the same transaction as the data. ``payload`` holds the
    JSON of ``{"changes": [...], "tables": {...}}`` in the wire encoding.
    ``seq`` stays NULL until the relay numbers the entry (committed
    before it publishes it; a number, once given, never changes);
    ``published_at`` stays NULL until the broker confirmed it.
``oslo_publish_streams``
    One row per stream: the last sequence number published (numbered
    but unconfirmed entries are ``last_seq + 1`` onwards) and the
    stream's ``epoch`` (32 hex digits, made with the row; renewed when
    the database is found restored). Relays lock this row (``SELECT ...
    FOR UPDATE``) to serialise every process that publishes the same
    stream from the same database.
``oslo_publish_log_positions``
    With ``capture = logical``: per stream, the log position of the last
    transaction staged into the outbox (:mod:`oslo_publish.logcapture`).
"""

import datetime
import json

from oslo_log import log
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

LOG = log.getLogger(__name__)

VERSION_TABLE = 'oslo_publish_alembic_version'

metadata = sa.MetaData()

#: DATETIME with microseconds on MySQL/MariaDB (whose default has none).
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql',
                                       'mariadb')
#: Unbounded text (MySQL's TEXT stops at 64 KiB).
LongText = sa.Text().with_variant(mysql.LONGTEXT(), 'mysql', 'mariadb')
#: 64-bit autoincrement key that is still an INTEGER PRIMARY KEY on SQLite.
BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')

outbox = sa.Table(
    'oslo_publish_outbox', metadata,
    sa.Column('id', BigId, primary_key=True, autoincrement=True),
    sa.Column('stream', sa.String(255), nullable=False),
    sa.Column('txid', sa.String(36), nullable=False),
    sa.Column('committed_at', Timestamp, nullable=False),
    sa.Column('payload', LongText, nullable=False),
    sa.Column('seq', sa.BigInteger, nullable=True),
    sa.Column('published_at', Timestamp, nullable=True),
    # The database transaction id and log position of an entry staged by
    # log-based capture (NULL for session capture); the snapshot
    # watermark needs them.
    sa.Column('xid', sa.BigInteger, nullable=True),
    sa.Column('log_position', sa.String(255), nullable=True),
    sa.Index('oslo_publish_outbox_pending', 'stream', 'seq', 'id'),
    mysql_engine='InnoDB',
)

streams = sa.Table(
    'oslo_publish_streams', metadata,
    sa.Column('stream', sa.String(255), primary_key=True),
    sa.Column('last_seq', sa.BigInteger, nullable=False, default=0),
    sa.Column('updated_at', Timestamp, nullable=True),
    sa.Column('epoch', sa.String(32), nullable=True),
    mysql_engine='InnoDB',
)

log_positions = sa.Table(
    'oslo_publish_log_positions', metadata,
    sa.Column('stream', sa.String(255), primary_key=True),
    sa.Column('position', sa.String(255), nullable=False),
    sa.Column('updated_at', Timestamp, nullable=True),
    mysql_engine='InnoDB',
)


#: The entry's INSERT. ``inline()``: nobody reads the new ``id``, so it is
#: not fetched (on PostgreSQL no ``RETURNING id``, no result row).
_INSERT = outbox.insert().inline()
_COLUMNS = ('stream', 'txid', 'committed_at', 'payload')


def _insert_and_notify(channel):
    """PostgreSQL: the entry's INSERT that also sends ``NOTIFY channel``.

    One round trip instead of two: the row is selected from
    ``pg_notify()`` (which, like ``NOTIFY``, is delivered at the commit).
    """
    notify = sa.func.pg_notify(sa.literal(channel), sa.literal(''))
    values = sa.select(*[sa.bindparam(name, type_=outbox.c[name].type)
                         for name in _COLUMNS]).select_from(
        notify.table_valued().alias('notified'))
    return outbox.insert().from_select(list(_COLUMNS), values)


def _compile_for_driver(insert, dialect):
    """``insert`` compiled for ``dialect``'s driver, or None (see stage)."""
    if dialect.paramstyle != 'pyformat':
        return None
    for name in _COLUMNS:
        impl = outbox.c[name].type.dialect_impl(dialect)
        if impl.bind_processor(dialect) is not None:
            return None
    compiled = insert.compile(dialect=dialect, column_keys=list(_COLUMNS))
    if compiled.positional or not set(_COLUMNS) <= set(compiled.binds):
        return None
    # Other parameters (the NOTIFY channel) are constants of the
    # statement: rendered into it, as Core would send them.
    constants = {}
    for name, bind in compiled.binds.items():
        if name in _COLUMNS:
            continue
        if bind.value is None or bind.callable is not None or \
                bind.type.dialect_impl(dialect).bind_processor(
                    dialect) is not None:
            return None
        constants[name] = bind.value
    sql = compiled.string
    literal = sa.String().literal_processor(dialect)
    for name, value in constants.items():
        # The quoted literal, its % doubled as the driver expects.
        sql = sql.replace('%%(%s)s' % name,
                          literal(value).replace('%', '%%'))
    return sql


def count_unpublished(stream=None):
    """A SELECT of the number of entries the broker has not confirmed.

    This is the relay's backlog: an entry counts until the relay stamped
    ``published_at`` or deleted it, including entries already numbered
    (``seq`` set) but not confirmed. ``stream`` None counts every stream.
    """
    query = (sa.select(sa.func.count()).select_from(outbox)
             .where(outbox.c.published_at.is_(None)))
    if stream is not None:
        query = query.where(outbox.c.stream == stream)
    return query


class OutboxSink(object):
    """Writes each captured transaction as ONE outbox row, in the tx.

    The capture calls :meth:`stage` at ``before_commit``, after the
    transaction's own DML was flushed, so a transaction that conflicts on
    a row writes its entry after the first one committed (per-row commit
    order, see DESIGN.md). :meth:`committed` wakes the relay.

    :param stream: the stream name stored with every entry.
    :param wake: a callable run after each commit that wrote an entry
        (the relay's ``wake``), or None; may be set later.
    :param notify: on PostgreSQL, also send ``NOTIFY`` on the stream's
        channel in the transaction (delivered at its commit), for a
        standalone relay (``relay_in_process = false``) to wake up; the
        same statement as the INSERT (:func:`_insert_and_notify`).
    """

    def __init__(self, stream, wake=None, notify=False):
        self.stream = stream
        self.wake = wake
        self.notify = notify
        self._notify_insert = None
        # {(dialect, plain INSERT?): driver SQL or None}
        self._driver_cache = {}
        if notify:
            from oslo_publish.relay import wake as wake_mod
            self._notify_insert = _insert_and_notify(
                wake_mod.channel(stream))

    def stage(self, session, txid, committed_at, changes, tables):
        """INSERT the transaction's entry through the session connection."""
        if committed_at.tzinfo is not None:
            committed_at = committed_at.astimezone(
                datetime.timezone.utc).replace(tzinfo=None)
        payload = json.dumps({'changes': changes, 'tables': tables},
                             separators=(',', ':'), allow_nan=False)
        conn = session.connection()
        insert = _INSERT
        if self._notify_insert is not None and \
                conn.dialect.name == 'postgresql':
            insert = self._notify_insert
        params = {'stream': self.stream, 'txid': txid,
                  'committed_at': committed_at, 'payload': payload}
        sql = self._driver_sql(conn, insert)
        if sql is None:
            conn.execute(insert, params)
        else:
            conn.exec_driver_sql(sql, params)

    def _driver_sql(self, conn, insert):
        """The INSERT as driver SQL for ``conn``'s dialect, or None.

        Written once per transaction on the writer's thread, the entry
        skips the statement's cache lookup and parameter processing:
        where the driver takes named parameters and none of the four
        columns needs a bind processor (psycopg2, PyMySQL), the statement
        is compiled once per dialect and sent with
        ``Connection.exec_driver_sql`` (engine events still see it).
        Elsewhere, or with a ``schema_translate_map``, None: the Core
        statement is executed.
        """
        key = (conn.dialect, insert is _INSERT)
        cache = self._driver_cache
        sql = cache.get(key, False)
        if sql is False:
            sql = _compile_for_driver(insert, conn.dialect)
            if len(cache) >= 8:  # engines come and go (tests): bounded
                cache.clear()
            cache[key] = sql
        if sql is not None and \
                conn.get_execution_options().get('schema_translate_map'):
            return None
        return sql

    def committed(self, session):
        """Wake the relay (no SQL here: the transaction is over)."""
        wake = self.wake
        if wake is not None:
            try:
                wake()
            except Exception:  # noqa: never fail the host after commit
                LOG.exception('Waking the relay failed')

    def discarded(self, session):
        """The transaction rolled back: its row went with it."""
