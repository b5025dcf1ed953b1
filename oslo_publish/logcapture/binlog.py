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

"""The MariaDB/MySQL row binlog reader (``capture = logical``).

The reader connects to the server as a replica (the
``mysql-replication`` package, module ``pymysqlreplication``) and reads
the row-based binlog from the GTID after the last staged position. A
thread of its own reads and decodes (:mod:`.binlog_decode`) and hands
complete transactions to :meth:`Reader.read` through a bounded queue,
so a slow staging step slows the reader instead of filling memory.

Positions are GTIDs (see :func:`.binlog_decode.position_of`): unlike a
binlog file name and offset they survive a ``FLUSH BINARY LOGS``, a
server restart and a switch to a replica that has the same GTIDs, and
the server answers a GTID it no longer has with an explicit error
(1236), which :meth:`Reader.read` raises as :class:`LogPositionLost`.
The binlog is not a slot: :meth:`Reader.confirm` records nothing on the
server, the durable position is the one the staging step stored, and
how long the server keeps the binlog is its own setting
(``binlog_expire_logs_seconds`` / ``expire_logs_days``).

The server's prerequisites are in :mod:`.binlog_server`, the snapshot
cut in :mod:`.binlog_cut`, the decoding of events into transactions in
:mod:`.binlog_decode`.
"""

import queue
import socket
import threading
import time
import zlib

from oslo_log import log
import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication import event as binlog_event
from pymysqlreplication import row_event
import sqlalchemy as sa

from oslo_publish import exceptions
from oslo_publish import wire
from oslo_publish.logcapture import base
from oslo_publish.logcapture import binlog_cut
from oslo_publish.logcapture import binlog_decode
from oslo_publish.logcapture import binlog_server
from oslo_publish.logcapture.binlog_server import foreign_keys
from oslo_publish.logcapture.binlog_server import LogPositionLost  # noqa
from oslo_publish.logcapture.binlog_server import PrerequisiteError  # noqa
from oslo_publish.logcapture.binlog_server import ReaderBusy  # noqa

LOG = log.getLogger(__name__)

#: Decoded transactions the reader thread may hold ahead of read().
QUEUE_SIZE = 64

#: Seconds between two progress marks: transactions that touched no
#: published table are handed to staging (empty) at most this often, so
#: the staged position follows the binlog without a write per
#: transaction.
PROGRESS_INTERVAL = 1.0

_ROWS = {row_event.WriteRowsEvent: wire.INSERT,
         row_event.UpdateRowsEvent: wire.UPDATE,
         row_event.DeleteRowsEvent: wire.DELETE}

#: A GTID event's flag: the group is one statement without XID (DDL).
FL_STANDALONE = 1

#: Parse a table id's TABLE_MAP event once (see Reader._binlog_stream).
FREEZE_SCHEMA = True

#: Query events that change no table definition.
_NOT_DDL = frozenset(('BEGIN', 'COMMIT', 'ROLLBACK'))


def catch_up(engine, stream, conf, published, timeout):
    """Wait until every transaction committed before this call is staged.

    :returns: the staged position.
    """
    reader = Reader(conf, engine, published, stream)
    with engine.connect() as conn:
        gtid = (conn.exec_driver_sql(
            'SELECT @@global.gtid_binlog_pos').scalar() or '').split(',')[0]
    if not gtid:
        return binlog_cut.staged_position(engine, stream)
    return reader.wait_staged_through(
        binlog_decode.position_of(binlog_decode.parse_gtid(gtid)), timeout)


def _pin_start(engine, stream, position):
    """Store ``position`` as the stream's staged one, if it has none.

    Skipped (with a warning) while the positions table is missing:
    ``oslo-publish-manage upgrade`` first.
    """
    from oslo_publish import outbox
    from oslo_publish.relay import numbering
    table = outbox.log_positions
    if not sa.inspect(engine).has_table(table.name):
        LOG.warning('Table %s is missing (run oslo-publish-manage upgrade '
                    'first): stream %s will start reading the binlog '
                    'where it is when its relay starts', table.name, stream)
        return
    with engine.begin() as conn:
        if conn.execute(sa.select(table.c.stream).where(
                table.c.stream == stream)).first() is not None:
            return
        try:
            with conn.begin_nested():
                conn.execute(table.insert().values(
                    stream=stream, position=position,
                    updated_at=numbering.utcnow()))
        except sa.exc.IntegrityError:
            pass   # a relay started meanwhile: its position stands


class Reader(binlog_cut.CutMixin, base.LogReader):
    """Reads the row binlog of the host's MariaDB/MySQL database.

    :param conf: the ConfigOpts (``[oslo_publish]`` options).
    :param engine: an Engine on the host database; the replica
        connection uses its host, port and credentials.
    :param published: ``{name: PublishedTable}``.
    :param stream: the stream name (for log messages).
    """

    def __init__(self, conf, engine, published, stream):
        # ``published`` is kept, not copied: the process's snapshot
        # server and relay hold the same dict (``install()``'s tables),
        # and a table re-learnt after DDL replaces its entry there, so
        # that snapshots announce the version the deltas carry.
        super().__init__(conf, engine, published, stream)
        self.schema = engine.url.database
        self.builder = binlog_decode.TransactionBuilder(
            published, self.schema, engine.dialect)
        self._queue = queue.Queue(QUEUE_SIZE)
        self._thread = None
        self._closing = threading.Event()
        self._stream = None
        self._lock = threading.Lock()
        self._read_through = None   # position of the last tx the thread saw
        self._confirmed = None
        self._file_pos = {}         # position -> (binlog file, end offset)
        self._at = (None, None)     # where the thread is in the binlog
        self._owner = None          # (connection, name) of the lock

    # ------------------------------------------------------ prerequisites

    @classmethod
    def check(cls, engine):
        """Raise :class:`PrerequisiteError` naming what the server lacks."""
        binlog_server.check(engine)

    @classmethod
    def setup(cls, conf, engine, published, stream):
        """Check the settings; pin the stream's first read position.

        Nothing is created on the server. A stream that has no staged
        position yet gets the binlog's current end as its position, so
        that its first reader starts there, not where the binlog is when
        the relay first starts: a transaction committed between
        ``capture-setup`` and that start is captured (as a PostgreSQL
        slot keeps the WAL from its creation). A stream that already has
        a position (a relay ran) keeps it.

        :returns: what the reader will read (for ``capture-setup``).
        """
        cls.check(engine)
        with engine.connect() as conn:
            gtid = conn.exec_driver_sql(
                'SELECT @@global.gtid_binlog_pos').scalar()
        first = (gtid or '').split(',')[0]
        _pin_start(engine, stream, binlog_decode.position_of(
            binlog_decode.parse_gtid(first)) if first else '')
        return 'the row binlog of database %s (now at GTID %s)' % (
            engine.url.database, gtid or 'none')

    @classmethod
    def teardown(cls, conf, engine, published, stream):
        """Nothing to drop: the binlog is not reserved for a reader."""
        return 'nothing (the binlog belongs to the server)'

    # --------------------------------------------------------- the cut

    # ----------------------------------------------------------- reading

    def start(self, after_position):
        """Connect and read from the transaction after ``after_position``.

        None: from the server's current end (``@@gtid_binlog_pos``).
        """
        if self._thread is not None:
            raise RuntimeError('the binlog reader is already started')
        self._take_lock()
        while True:   # what a previous run left unread
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if after_position is None:
            with self.engine.connect() as conn:
                gtid = conn.exec_driver_sql(
                    'SELECT @@global.gtid_binlog_pos').scalar() or ''
            gtid = gtid.split(',')[0]
            start = (binlog_decode.position_of(
                binlog_decode.parse_gtid(gtid)) if gtid else '')
        else:
            start = after_position
            gtid = binlog_decode.gtid_of(after_position)
        # After the position is known: a foreign key made later comes as
        # DDL in the stream (and is learnt then).
        self.builder.set_foreign_keys(foreign_keys(self.engine, self.schema))
        with self._lock:
            self._read_through = start
            self._confirmed = start
        self._closing.clear()
        self.builder.tx = None
        if after_position is None and start:
            # Staged as the stream's position: the start is known to
            # every process (snapshot_cut reads the binlog from there).
            self._queue.put(base.LogTransaction(start, None, None, [], {}))
        self._last_put = time.monotonic()
        self._stream = stream = self._binlog_stream(gtid, blocking=True)
        self._thread = threading.Thread(
            target=self._run, args=(stream,),
            name='binlog-reader-%s' % self.stream, daemon=True)
        self._thread.start()
        LOG.info('Binlog reader of stream %s started after GTID %s',
                 self.stream, gtid or '(none)')

    def _take_lock(self):
        """One reader per stream and database (``GET_LOCK``).

        Several relay processes of a stream (API workers with the relay
        in process, or a standby ``oslo-publish-relay``) would otherwise
        all decode the whole binlog; the others retry and take over when
        the holder's connection ends (the server frees the lock of a
        killed process's connection too).
        """
        name = 'oslo_publish.binlog.%s.%s' % (self.schema, self.stream)
        if len(name) > 64:
            name = 'oslo_publish.binlog.%08x' % zlib.crc32(name.encode())
        conn = self.engine.connect()
        try:
            got = conn.exec_driver_sql('SELECT GET_LOCK(%s, 0)',
                                       (name,)).scalar()
        except BaseException:
            conn.close()
            raise
        if got != 1:
            conn.close()
            raise ReaderBusy('another process reads the binlog of stream %s '
                             '(lock %s held); retrying' % (self.stream, name))
        self._owner = (conn, name)

    def _binlog_stream(self, gtid, blocking, server_id=None, heartbeat=1.0):
        events = [binlog_event.MariadbGtidEvent, binlog_event.XidEvent,
                  binlog_event.QueryEvent, row_event.WriteRowsEvent,
                  row_event.UpdateRowsEvent, row_event.DeleteRowsEvent]
        if server_id is not None:
            # A scan gets control back while the server has nothing.
            events.append(binlog_event.HeartbeatLogEvent)
        # freeze_schema: a TABLE_MAP event of a table id already mapped
        # is not parsed again (every transaction logs one per table; its
        # columns and optional metadata were half of the reader's CPU).
        # A table id names one definition until a DDL statement (which
        # _feed answers by dropping the whole map) or a server restart
        # (a new binlog file: the library drops the map at the rotate).
        return BinLogStreamReader(
            connection_settings=binlog_server.connection_settings(self.engine),
            server_id=server_id or self._server_id(),
            blocking=blocking,
            is_mariadb=True,
            auto_position=gtid,
            only_schemas=[self.schema],
            only_events=events,
            pymysql_wrapper=self._connect,
            slave_heartbeat=heartbeat,
            freeze_schema=FREEZE_SCHEMA,
            enable_logging=False)

    def _server_id(self):
        configured = getattr(self.conf.oslo_publish, 'binlog_server_id',
                             None)
        if configured:
            return configured
        # Unique enough among the replicas of one server; two readers
        # with one id would disconnect each other.
        seed = '%s/%s/%s' % (socket.gethostname(), self.stream,
                             threading.get_native_id())
        return 0x40000000 + zlib.crc32(seed.encode()) % 0x3fffffff

    def _connect(self, **kwargs):
        if self._closing.is_set():
            raise pymysql.err.InterfaceError(0, 'the binlog reader is closed')
        return pymysql.connect(**kwargs)

    def _run(self, stream):
        try:
            for ev in stream:
                if self._closing.is_set():
                    return
                done = self._feed(self.builder, stream, ev, self._relearn)
                if done is not None:
                    self._done(stream, ev, done)
        except pymysql.err.OperationalError as exc:
            if self._closing.is_set():
                return
            if exc.args and exc.args[0] == \
                    binlog_server.ER_MASTER_FATAL_ERROR_READING_BINLOG:
                self._put(LogPositionLost(
                    'stream %s: the binlog after %s is no longer on the '
                    'server: %s' % (self.stream, self._read_through,
                                    exc.args[-1])))
            else:
                self._put(exc)
        except Exception as exc:  # noqa: handed to read(), which raises
            if not self._closing.is_set():
                LOG.exception('Binlog reader of stream %s failed',
                              self.stream)
                self._put(exc)

    def _put(self, item):
        while not self._closing.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _feed(self, builder, stream, ev, relearn=None):
        """One binlog event; returns the transaction it ended, if any."""
        if isinstance(ev, binlog_event.MariadbGtidEvent):
            builder.begin((ev.domain_id, ev.server_id, ev.gtid_seq_no),
                          bool(ev.flags & FL_STANDALONE))
            return None
        if isinstance(ev, row_event.RowsEvent):
            if ev.schema == self.schema:
                builder.rows_event(_ROWS[type(ev)], ev.table,
                                   lambda: ev.rows)
            return None
        ends, xid = False, None
        if isinstance(ev, binlog_event.QueryEvent):
            schema = ev.schema.decode() if isinstance(
                ev.schema, bytes) else ev.schema
            query = ev.query.decode('utf-8', 'replace') if isinstance(
                ev.query, bytes) else ev.query
            if query.strip().upper() not in _NOT_DDL:
                # Any other statement may change a table's definition:
                # the next TABLE_MAP events are parsed again.
                stream.table_map.clear()
            changed, ends = builder.query(query, schema)
            if changed and relearn is not None:
                relearn(changed)
        elif isinstance(ev, binlog_event.XidEvent):
            ends, xid = True, ev.xid
        if not ends or builder.tx is None:
            return None
        gtid = builder.tx.gtid
        # A reconnect inside pymysqlreplication resumes after this one.
        stream.auto_position = binlog_decode.format_gtid(gtid)
        return builder.end(binlog_decode.position_of(gtid), xid,
                           ev.timestamp) or binlog_decode.position_of(gtid)

    def _done(self, stream, ev, done):
        """Queue a transaction (or, now and then, a progress mark)."""
        position = done if isinstance(done, str) else done.position
        with self._lock:
            self._at = (stream.log_file, ev.packet.log_pos)
        put = None
        if not isinstance(done, str):
            now = time.monotonic()
            if done.changes or now - self._last_put >= PROGRESS_INTERVAL:
                put = done
        if put is not None:
            with self._lock:
                self._file_pos[position] = self._at
            self._last_put = time.monotonic()
            self._put(put)
        with self._lock:
            self._read_through = position

    def _relearn(self, names):
        """A published table's definition changed: resolve it again.

        The new tables replace their entries in the published dict this
        reader was made with (as the PostgreSQL reader does): the
        process's snapshot server then announces the version that the
        deltas after the DDL carry. A copy would leave the snapshot
        server at the old version until the host restarts, and a
        consumer migrating in between would install the old version and
        resync once more at the first delta after its snapshot.
        """
        from oslo_publish import schema
        try:
            fresh = schema.resolve_tables(self.conf, engine=self.engine)
        except exceptions.ConfigError as exc:
            LOG.error('Stream %s: the published tables cannot be resolved '
                      'after DDL on %s: %s; keeping their old definition',
                      self.stream, ', '.join(names), exc)
            return
        relearnt = {}
        for name in names:
            if name in fresh and name in self.tables:
                old = self.tables[name]
                new = self._merged(old, fresh[name])
                if new.version != old.version:
                    LOG.info('Stream %s: table %s now has schema version %s '
                             '(was %s)', self.stream, name, new.version,
                             old.version)
                relearnt[name] = new
        # Existing keys only: readers of the dict in other threads never
        # see its size change.
        self.tables.update(relearnt)
        self.builder.set_published(self.tables)
        self.builder.set_foreign_keys(foreign_keys(self.engine, self.schema))

    def _merged(self, old, fresh):
        """The re-resolved table, with the old table's column types.

        Columns the table still has keep the types the host declared
        (their codecs and result processing: a ``JSON``, an ``Enum``, an
        ``Interval`` stay what session capture publishes); new columns
        take the types the database reports. The schema version is the
        one a restarted host computes (from the stored types).
        """
        from oslo_publish import codec
        from oslo_publish import schema
        columns = [sa.Column(c.name, (old.table.c[c.name].type
                                      if c.name in old.table.c else c.type))
                   for c in fresh.table.columns]
        table = sa.Table(fresh.table.name, sa.MetaData(), *columns,
                         sa.PrimaryKeyConstraint(*fresh.pk),
                         schema=fresh.table.schema)
        json_columns = [c for c in fresh.columns if c not in old.table.c
                        and fresh.codecs[c].kind == 'json_text']
        if not json_columns:
            json_columns = codec.json_checked_columns(self.engine, table)
            json_columns = [c for c in json_columns
                            if c not in old.table.c]
        return schema.PublishedTable(
            old.name, table, fresh.excluded, stored=fresh.table,
            dialect=self.engine.dialect.name, json_columns=json_columns)

    def read(self, timeout):
        """The next transactions (a list, maybe empty) within ``timeout``.

        :raises LogPositionLost: the binlog after the position is gone.
        """
        out = []
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return out
        while True:
            if isinstance(item, Exception):
                raise item
            out.append(item)
            if len(out) >= QUEUE_SIZE:
                break
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
        return out

    def confirm(self, position):
        """Staged durably up to ``position``: only remembered (for lag)."""
        with self._lock:
            if self._confirmed is None or position > self._confirmed:
                self._confirmed = position
            for old in [p for p in self._file_pos if p < position]:
                del self._file_pos[old]

    def lag(self):
        """Binlog bytes after the last confirmed transaction, or None."""
        with self._lock:
            at = self._file_pos.get(self._confirmed) or self._at
        if at[0] is None:
            return None
        try:
            with self.engine.connect() as conn:
                logs = conn.exec_driver_sql('SHOW BINARY LOGS').fetchall()
        except sa.exc.SQLAlchemyError as exc:
            LOG.debug('Cannot list the binary logs: %s', exc)
            return None
        total, seen = 0, False
        for name, size in ((r[0], int(r[1])) for r in logs):
            if name == at[0]:
                seen = True
                total += max(size - at[1], 0)
            elif seen:
                total += size
        return total if seen else None

    def close(self):
        """Stop the reader thread and disconnect; safe to call twice."""
        self._closing.set()
        stream, self._stream = self._stream, None
        if stream is not None:
            conn = getattr(stream, '_stream_connection', None)
            sock = getattr(conn, '_sock', None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self.close_visible_check()
        owner, self._owner = self._owner, None
        if owner is not None:
            conn, name = owner
            try:
                # The connection goes back to the pool: free the lock.
                conn.exec_driver_sql('SELECT RELEASE_LOCK(%s)', (name,))
                conn.rollback()
            except Exception:  # noqa: a broken connection frees it too
                LOG.debug('Releasing the lock failed', exc_info=True)
                conn.invalidate()
            conn.close()
        if stream is not None:
            try:
                stream.close()
            except Exception:  # noqa: closing a broken connection
                LOG.debug('Closing the binlog stream failed', exc_info=True)
