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

"""The consumer's persistent state: where it is in each stream.

SQL through oslo.db's enginefacade (one private transaction context per
:class:`StateStore`); a SQLite file by default, MySQL/MariaDB and
PostgreSQL supported. The schema is created and upgraded by alembic
(``consumer-manage upgrade``, version table
:data:`consumer.migration.VERSION_TABLE`).

``consumer_positions``
    One row per *collection unit* ``(scope_id, scope_key, collector,
    fetcher)``, as in CloudKitty's state management: ``scope_id`` is the
    table, ``scope_key`` the stream, ``collector`` the driver name,
    ``fetcher`` the source kind. It holds the applied sequence number,
    the commit timestamp of the last applied transaction, the table's
    schema version (so the set of ``(table, schema_version)`` of a stream
    is stored), a state and the last error. ``scope_key``, ``collector``
    and ``fetcher`` are nullable: a legacy row ``(A, NULL, NULL, NULL)``
    is adopted by the first lookup of ``(A, B, C, D)`` (:meth:`get_scope`).
``consumer_rows``
    The mirrored rows of each ``(stream, table)`` when ``[consumer]
    persist_rows`` is on: primary key (wire-encoded JSON) and its indexed
    form (:func:`consumer.store_codec.key_hash`: integer keys in key
    order, others SHA-256; at most 64 characters, so MySQL can index it),
    and the row in the wire encoding. Written in
    the same transaction as the position they correspond to, so a
    restarted consumer resumes without a new snapshot.
``consumer_streams``
    Per stream status for ``consumer-status``: state, last error,
    counters (JSON) and when it was written.

Failure policy: every method is one transaction; a failure rolls all of
it back and is raised (oslo.db's ``DBError`` family) to the caller, which
decides whether to retry or resynchronise.
"""

import collections
import datetime
import decimal
import json
import os

from oslo_db import exception as db_exc
from oslo_db import options as db_options
from oslo_db.sqlalchemy import enginefacade
from oslo_log import log
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from consumer import bulk_rows
from consumer import migration
from consumer import row_upsert
from consumer import staged_rows
from consumer import store_codec
from oslo_publish import wire

LOG = log.getLogger(__name__)

metadata = sa.MetaData()

#: DATETIME with microseconds on MySQL/MariaDB (whose default has none).
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql',
                                       'mariadb')
#: Unbounded text (MySQL's TEXT stops at 64 KiB).
LongText = sa.Text().with_variant(mysql.LONGTEXT(), 'mysql', 'mariadb')
#: 64-bit autoincrement key that is still an INTEGER PRIMARY KEY on SQLite.
BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')

positions = sa.Table(
    'consumer_positions', metadata,
    sa.Column('id', BigId, primary_key=True, autoincrement=True),
    sa.Column('scope_id', sa.String(255), nullable=False),
    sa.Column('scope_key', sa.String(255), nullable=True),
    sa.Column('collector', sa.String(64), nullable=True),
    sa.Column('fetcher', sa.String(64), nullable=True),
    sa.Column('seq', sa.BigInteger, nullable=True),
    sa.Column('committed_at', Timestamp, nullable=True),
    sa.Column('schema_version', sa.String(64), nullable=True),
    sa.Column('state', sa.String(32), nullable=True),
    sa.Column('last_error', sa.Text, nullable=True),
    sa.Column('updated_at', Timestamp, nullable=True),
    sa.Column('epoch', sa.String(64), nullable=True),
    sa.UniqueConstraint('scope_id', 'scope_key', 'collector', 'fetcher',
                        name='consumer_positions_unit'),
    sa.Index('consumer_positions_stream', 'scope_key', 'collector',
             'fetcher'),
    mysql_engine='InnoDB',
)

rows = sa.Table(
    'consumer_rows', metadata,
    sa.Column('stream', sa.String(255), primary_key=True),
    sa.Column('table_name', sa.String(255), primary_key=True),
    sa.Column('key_hash', sa.String(64), primary_key=True),
    sa.Column('key_json', sa.Text, nullable=False),
    sa.Column('row_json', LongText, nullable=False),
    mysql_engine='InnoDB',
)

streams = sa.Table(
    'consumer_streams', metadata,
    sa.Column('stream', sa.String(255), primary_key=True),
    sa.Column('state', sa.String(32), nullable=True),
    sa.Column('last_error', sa.Text, nullable=True),
    sa.Column('counters', sa.Text, nullable=True),
    sa.Column('updated_at', Timestamp, nullable=True),
    mysql_engine='InnoDB',
)


class ScopeState(collections.namedtuple(
        'ScopeState', 'seq committed_at schema_version state last_error '
                      'epoch', defaults=(None,))):
    """Stored position of one collection unit.

    ``seq`` is the last applied sequence number (None: no snapshot yet),
    ``committed_at`` the commit time of that transaction (aware UTC
    datetime or None), ``epoch`` the stream epoch the position counts in
    (None: stored before epochs existed, or a 1.0 host).
    """

    __slots__ = ()


class StreamStatus(collections.namedtuple(
        'StreamStatus', 'state last_error counters updated_at')):
    """Stored status of one stream (``counters`` is a dict)."""

    __slots__ = ()


#: [consumer_database] options handed to the enginefacade (every engine
#: setting is taken from this group, never from the application's
#: [database]).
_ENGINE_OPTIONS = ('slave_connection', 'sqlite_synchronous',
                   'mysql_sql_mode', 'mysql_wsrep_sync_wait',
                   'connection_recycle_time', 'connection_debug',
                   'max_pool_size', 'max_overflow', 'pool_timeout',
                   'connection_trace', 'max_retries', 'retry_interval',
                   'connection_parameters')
#: oslo.db's defaults of those options, for stores built without a conf.
_ENGINE_DEFAULTS = {opt.dest: opt.default for opt in db_options.database_opts
                    if opt.dest in _ENGINE_OPTIONS}

#: Rows per bulk statement (IN lists and executemany batches).
_CHUNK = 1000


class _Context(object):
    """A throw-away context object: one per enginefacade transaction."""


def _read_committed_on_mysql(engine):
    # InnoDB's default REPEATABLE READ takes gap locks for the deletes of
    # missing keys in commit_batch; under READ COMMITTED (PostgreSQL's
    # default too) concurrent streams cannot deadlock on them.
    if engine.dialect.name in ('mysql', 'mariadb'):
        engine.update_execution_options(isolation_level='READ COMMITTED')


def _make_sqlite_dir(url):
    # The default store is a SQLite file under [consumer] state_path, a
    # directory that may not exist yet on a fresh machine.
    if url.startswith('sqlite:///') and url != 'sqlite:///:memory:':
        directory = os.path.dirname(url[len('sqlite:///'):])
        if directory:
            os.makedirs(directory, exist_ok=True)


def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def _to_db_time(value):
    # Stored as naive UTC on every backend.
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return value


def _from_db_time(value):
    if value is None:
        return None
    return value.replace(tzinfo=datetime.timezone.utc)


#: One shared encoder: json.dumps() with options builds a new one per call.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(',', ':'),
                            ensure_ascii=False, allow_nan=False)
_json = _ENCODER.encode


#: The stored text of a primary-key tuple (canonical wire JSON).
key_text = store_codec.key_text
#: The indexed form of a key text (see store_codec.key_hash).
key_hash = store_codec.key_hash


def _part_order(value):
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, (int, float, decimal.Decimal)):
        return (2, value)
    if isinstance(value, str):
        return (3, value)
    return (4, type(value).__name__, value)


def _key_order(item):
    return tuple(_part_order(part) for part in item[0])


def _eq(column, value):
    return column.is_(None) if value is None else column == value


def _unit(stream, collector, fetcher):
    return sa.and_(_eq(positions.c.scope_key, stream),
                   _eq(positions.c.collector, collector),
                   _eq(positions.c.fetcher, fetcher))


#: The unit of a delta batch's position rows, as bound parameters: the
#: statements of StateStore._advance are built once (building and
#: keying a Core statement per batch cost more CPU than running it).
_UNIT_BOUND = sa.and_(positions.c.scope_key == sa.bindparam('unit_key'),
                      positions.c.collector == sa.bindparam('unit_collector'),
                      positions.c.fetcher == sa.bindparam('unit_fetcher'))
_KNOWN_TABLES = sa.select(positions.c.scope_id,
                          positions.c.schema_version).where(_UNIT_BOUND)
_RAISE_SEQ = positions.update().where(
    _UNIT_BOUND, positions.c.seq.is_not(None),
    positions.c.seq < sa.bindparam('new_seq')).values(
        seq=sa.bindparam('new_seq'),
        committed_at=sa.bindparam('new_committed'),
        updated_at=sa.bindparam('new_now'))


def _unit_params(stream, collector, fetcher):
    """Parameters of the prebuilt unit statements; None for a NULL part."""
    if stream is None or collector is None or fetcher is None:
        return None
    return {'unit_key': stream, 'unit_collector': collector,
            'unit_fetcher': fetcher}


def _scope_state(row):
    return ScopeState(row.seq, _from_db_time(row.committed_at),
                      row.schema_version, row.state, row.last_error,
                      row.epoch)


class StateStore(object):
    """Positions, mirrored rows and stream status in one SQL database.

    :param conf: a ConfigOpts with the consumer options registered.
    :param url: database URL; defaults to ``[consumer_database]
        connection``.
    :param persist_rows: mirror rows; defaults to ``[consumer]
        persist_rows``.

    Thread-safe: every method runs its own transaction.
    """

    def __init__(self, conf=None, url=None, persist_rows=None):
        settings = dict(_ENGINE_DEFAULTS)
        if conf is not None:
            group = conf.consumer_database
            for name in _ENGINE_OPTIONS:
                if name in group:
                    settings[name] = group[name]
            url = url or group.connection
            if persist_rows is None:
                persist_rows = conf.consumer.persist_rows
        if not url:
            raise ValueError('no state store connection URL')
        _make_sqlite_dir(url)
        settings['connection'] = url
        #: This store's own enginefacade context (never the global one),
        #: so two stores on different databases never share an engine.
        self._facade = enginefacade.transaction_context()
        self._facade.configure(**settings)
        self._facade.append_on_engine_create(_read_committed_on_mysql)
        self._writer = self._facade.writer.connection
        self._reader = self._facade.reader.connection
        #: Whether commit_batch / replace_table write consumer_rows.
        self.persist_rows = True if persist_rows is None else persist_rows
        self.url = url

    @classmethod
    def from_url(cls, url, persist_rows=True):
        """A store on ``url`` without a configuration object."""
        return cls(url=url, persist_rows=persist_rows)

    @property
    def engine(self):
        """The writer Engine (for tools and tests)."""
        return self._facade.writer.get_engine()

    def _write(self):
        return self._writer.using(_Context())

    def _read(self):
        return self._reader.using(_Context())

    def close(self):
        """Release the connection pool."""
        self._facade.dispose_pool()

    # ------------------------------------------------------------ schema

    def upgrade(self, revision='head'):
        """Create or upgrade the schema (alembic, own version table)."""
        migration.upgrade(self.engine, revision)

    def current_revision(self):
        """The schema revision of the store (None when never upgraded)."""
        return migration.current(self.engine)

    # --------------------------------------------------------- positions

    def load(self, stream, collector, fetcher, tables=None):
        """Positions of a stream's tables: ``{table: ScopeState}``.

        :param tables: table names also looked up through
            :meth:`get_scope`, so legacy ``(table, NULL, NULL, NULL)`` rows
            are adopted.
        """
        with self._read() as conn:
            found = conn.execute(
                sa.select(positions).where(
                    _unit(stream, collector, fetcher))).all()
        result = {row.scope_id: _scope_state(row) for row in found}
        for table in tables or ():
            if table not in result:
                adopted = self.get_scope(table, stream, collector, fetcher)
                if adopted is not None:
                    result[table] = adopted
        return result

    def schema_versions(self, stream, collector, fetcher):
        """The stored ``{table: schema_version}`` of a stream."""
        return {table: state.schema_version for table, state in
                self.load(stream, collector, fetcher).items()}

    def get_scope(self, scope_id, scope_key, collector, fetcher):
        """The state of one collection unit, or None.

        Backward compatible (CloudKitty): when ``(A, B, C, D)`` is
        missing but ``(A, NULL, NULL, NULL)`` exists, that row is adopted:
        its empty columns are set to B, C and D (persisted) and its state
        returned.
        """
        with self._write() as conn:
            row = self._select_scope(conn, scope_id, scope_key, collector,
                                     fetcher)
            if row is None:
                row = self._adopt(conn, scope_id, scope_key, collector,
                                  fetcher)
        return None if row is None else _scope_state(row)

    @staticmethod
    def _select_scope(conn, scope_id, scope_key, collector, fetcher):
        return conn.execute(sa.select(positions).where(
            positions.c.scope_id == scope_id,
            _unit(scope_key, collector, fetcher))).first()

    def _adopt(self, conn, scope_id, scope_key, collector, fetcher):
        if scope_key is None and collector is None and fetcher is None:
            return None
        legacy = self._select_scope(conn, scope_id, None, None, None)
        if legacy is None:
            return None
        conn.execute(positions.update().where(
            positions.c.id == legacy.id,
            _unit(None, None, None)).values(
                scope_key=scope_key, collector=collector, fetcher=fetcher,
                updated_at=_utcnow()))
        LOG.info('Adopted the legacy state of scope %s as (%s, %s, %s, %s)',
                 scope_id, scope_id, scope_key, collector, fetcher)
        return self._select_scope(conn, scope_id, scope_key, collector,
                                  fetcher)

    def _position_id(self, conn, table, stream, collector, fetcher):
        # The id of the unit's row: existing, adopted or new.
        row = self._select_scope(conn, table, stream, collector, fetcher)
        if row is None:
            row = self._adopt(conn, table, stream, collector, fetcher)
        if row is not None:
            return row.id
        result = conn.execute(positions.insert().values(
            scope_id=table, scope_key=stream, collector=collector,
            fetcher=fetcher, updated_at=_utcnow()))
        return result.inserted_primary_key[0]

    def set_state(self, stream, collector, fetcher, table, state,
                  last_error=None):
        """Record a table's state (e.g. ``snapshotting``) and last error."""
        with self._write() as conn:
            ident = self._position_id(conn, table, stream, collector,
                                      fetcher)
            conn.execute(positions.update().where(
                positions.c.id == ident).values(
                    state=state, last_error=last_error,
                    updated_at=_utcnow()))

    def set_epoch(self, stream, collector, fetcher, epoch):
        """Record the stream epoch the unit's positions belong to.

        Called after a snapshot is installed (the positions then count in
        that epoch); None leaves a legacy store without an epoch.
        """
        with self._write() as conn:
            conn.execute(positions.update().where(
                _unit(stream, collector, fetcher)).values(
                    epoch=epoch, updated_at=_utcnow()))

    def commit_batch(self, stream, collector, fetcher, seq, committed_at,
                     changes, schema_versions):
        """Store one applied batch: mirrored rows and position, atomically.

        In one transaction: the batch's row changes (when
        ``persist_rows``; inserts and updates are upserts, deletes of
        missing rows no-ops), then the position: every table of the unit
        whose seq is known is raised to ``seq`` (never lowered), tables
        the store does not know yet are added at ``seq``, and the schema
        versions of ``schema_versions`` (``{table: version}``) recorded.

        :param changes: list of :class:`oslo_publish.wire.Change`.
        :param committed_at: commit time of the last transaction (aware
            datetime or ISO text).
        """
        committed = _to_db_time(committed_at)
        now = _utcnow()
        with self._write() as conn:
            if self.persist_rows and changes:
                self._write_changes(conn, stream, changes)
            self._advance(conn, stream, collector, fetcher, seq, committed,
                          schema_versions or {}, changes, now)

    def _write_changes(self, conn, stream, changes):
        # One upsert statement per table (chunked) for the keys the batch
        # leaves with a row, one bulk delete per table for the others.
        encoded = store_codec.encode_changes(changes)
        for table, digests in encoded.deletes.items():
            for start in range(0, len(digests), _CHUNK):
                row_upsert.delete_rows(conn, rows, stream, table,
                                       digests[start:start + _CHUNK])
        for table, items in encoded.upserts.items():
            for start in range(0, len(items), _CHUNK):
                row_upsert.upsert_rows(conn, rows, stream, table,
                                       items[start:start + _CHUNK])

    def _advance(self, conn, stream, collector, fetcher, seq, committed,
                 schema_versions, changes, now):
        params = _unit_params(stream, collector, fetcher)
        if params is not None:
            known = dict(conn.execute(_KNOWN_TABLES, params).all())
            conn.execute(_RAISE_SEQ, dict(params, new_seq=seq,
                                          new_committed=committed,
                                          new_now=now))
        else:
            unit = _unit(stream, collector, fetcher)
            known = dict(conn.execute(sa.select(
                positions.c.scope_id, positions.c.schema_version).where(
                    unit)).all())
            conn.execute(positions.update().where(
                unit, positions.c.seq.is_not(None),
                positions.c.seq < seq).values(
                    seq=seq, committed_at=committed, updated_at=now))
        tables = dict.fromkeys(map(store_codec.TABLE_OF, changes))
        tables.update(schema_versions)
        new = []
        for table, version in tables.items():
            if table not in known:
                new.append({'scope_id': table, 'scope_key': stream,
                            'collector': collector, 'fetcher': fetcher,
                            'seq': seq, 'committed_at': committed,
                            'schema_version': version, 'updated_at': now})
            elif version is not None and known[table] != version:
                conn.execute(positions.update().where(
                    _unit(stream, collector, fetcher),
                    positions.c.scope_id == table).values(
                        schema_version=version, updated_at=now))
        if new:
            conn.execute(positions.insert(), new)

    def replace_table(self, stream, collector, fetcher, table, rows_by_key,
                      seq, schema_version, committed_at=None):
        """Replace a table's mirrored rows and set its position, atomically.

        :param rows_by_key: ``{key tuple: row dict}``, the whole table.
        :param seq: the snapshot's watermark; the position is set to it
            exactly.
        """
        with self._write() as conn:
            if self.persist_rows:
                self._refill_rows(conn, stream, table, rows_by_key.items())
            self._set_snapshot_position(conn, stream, collector, fetcher,
                                        table, seq, schema_version,
                                        committed_at)
        if self.persist_rows and rows_by_key:
            self._analyze_rows()

    def _refill_rows(self, conn, stream, table, items):
        # A table's mirrored rows replaced by ``items`` (caller's
        # transaction).
        conn.execute(rows.delete().where(
            rows.c.stream == stream, rows.c.table_name == table))
        bulk_rows.insert_rows(conn, rows, stream, table, items)

    def _set_snapshot_position(self, conn, stream, collector, fetcher, table,
                               seq, schema_version, committed_at=None):
        ident = self._position_id(conn, table, stream, collector, fetcher)
        conn.execute(positions.update().where(
            positions.c.id == ident).values(
                seq=seq, schema_version=schema_version,
                committed_at=_to_db_time(committed_at),
                last_error=None, updated_at=_utcnow()))

    def stage_tables(self, stream, collector, fetcher):
        """A writer of snapshot tables while they are still being read.

        Returns a started :class:`consumer.staged_rows.StagedTables`
        whose one transaction replaces the mirrored rows table by table
        as the pages come (a ``COPY`` fed page by page) and sets the
        positions when it is finished; or None when rows are not
        persisted or the backend has no streamed load (then
        :meth:`replace_table` writes each whole table).
        """
        if not self.persist_rows or not bulk_rows.streams(self.engine):
            return None
        return staged_rows.StagedTables(self, stream, collector, fetcher)

    def _analyze_rows(self):
        # PostgreSQL: without statistics after a bulk load the planner
        # answers commit_batch's "key_hash IN (...)" by scanning every
        # mirrored row of the table (until autovacuum analyzes it).
        if self.engine.dialect.name != 'postgresql':
            return
        try:
            with self._write() as conn:
                conn.exec_driver_sql('ANALYZE %s' % rows.name)
        except db_exc.DBError as exc:
            LOG.warning('Could not analyze %s: %s', rows.name,
                        type(exc).__name__)

    def drop_table(self, stream, collector, fetcher, table):
        """Forget a table: its position and its mirrored rows."""
        with self._write() as conn:
            conn.execute(positions.delete().where(
                positions.c.scope_id == table,
                _unit(stream, collector, fetcher)))
            conn.execute(rows.delete().where(
                rows.c.stream == stream, rows.c.table_name == table))

    # ------------------------------------------------------ mirrored rows

    def _sorted_rows(self, stream, table):
        with self._read() as conn:
            found = conn.execute(sa.select(
                rows.c.key_json, rows.c.row_json).where(
                    rows.c.stream == stream,
                    rows.c.table_name == table)).all()
        loads = bulk_rows.loads
        keyed = [(wire.decode_key(loads(k)), r) for k, r in found]
        try:
            keyed.sort(key=_key_order)
        except TypeError:
            # Keys of mixed, incomparable types: a stable text order.
            keyed.sort(key=lambda item: key_text(item[0]))
        return keyed

    def load_rows(self, stream, table):
        """Mirrored rows of a table: ``(key tuple, row dict)`` in key order.

        The order is the primary-key order of the decoded values (so the
        integer key 2 comes before 10).
        """
        for key, text in self._sorted_rows(stream, table):
            yield key, bulk_rows.decode_row(bulk_rows.loads(text))

    def load_table(self, stream, table):
        """Mirrored rows of a table as ``{key tuple: row dict}``, unordered.

        The resume path: one query and a bulk decode
        (:func:`consumer.store_codec.decode_table`), no sort.
        """
        with self._read() as conn:
            found = conn.execute(sa.select(
                rows.c.key_json, rows.c.row_json).where(
                    rows.c.stream == stream,
                    rows.c.table_name == table)).all()
        return store_codec.decode_table(found)

    def load_encoded_rows(self, stream, table):
        """Like :meth:`load_rows`, rows left in the wire encoding."""
        for key, text in self._sorted_rows(stream, table):
            yield key, json.loads(text)

    def row_streams(self, table):
        """Streams that hold mirrored rows of ``table``, sorted."""
        with self._read() as conn:
            found = conn.execute(sa.select(rows.c.stream).where(
                rows.c.table_name == table).distinct()).scalars().all()
        return sorted(found)

    # ------------------------------------------------------------- status

    def set_status(self, stream, state, last_error=None, counters=None):
        """Record a stream's state, last error and counters."""
        values = {'state': state, 'last_error': last_error,
                  'counters': _json(counters or {}),
                  'updated_at': _utcnow()}
        # The UPDATE comes first: on SQLite a transaction that has read
        # cannot wait for the write lock (the busy timeout applies only
        # to a transaction's first access), so a SELECT first made the
        # write fail at once with "database is locked" whenever the
        # persister was writing.
        with self._write() as conn:
            updated = conn.execute(streams.update().where(
                streams.c.stream == stream).values(**values)).rowcount
            if updated:
                return
            try:
                with conn.begin_nested():
                    conn.execute(streams.insert().values(
                        stream=stream, **values))
                return
            except db_exc.DBDuplicateEntry:
                pass
            conn.execute(streams.update().where(
                streams.c.stream == stream).values(**values))

    def status(self):
        """Every stream's stored status: ``{stream: StreamStatus}``."""
        with self._read() as conn:
            found = conn.execute(sa.select(streams)).all()
        return {row.stream: StreamStatus(
            row.state, row.last_error, json.loads(row.counters or '{}'),
            _from_db_time(row.updated_at)) for row in found}
