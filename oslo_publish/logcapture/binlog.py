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
"""

import queue
import socket
import random
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
from oslo_publish.logcapture import binlog_decode

LOG = log.getLogger(__name__)

#: The server's answer to a replica asking for a position it lacks.
ER_MASTER_FATAL_ERROR_READING_BINLOG = 1236

#: Required server settings: ``{variable: accepted values}``.
REQUIRED = {
    'log_bin': ('ON', '1'),
    'binlog_format': ('ROW',),
    'binlog_row_image': ('FULL',),
    'binlog_row_metadata': ('FULL',),
}

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

# base.LogLost is the common "new epoch" error of every reader.
_Lost = getattr(base, 'LogLost', exceptions.PublishError)


class LogPositionLost(_Lost):
    """The binlog at the stored position is gone.

    Purged past the position, or another server: the stream must start
    a new epoch and resync (never a silent loss).
    """


class ReaderBusy(exceptions.PublishError):
    """Another process reads the binlog of this stream."""


class PrerequisiteError(exceptions.ConfigError):
    """The server lacks a setting or privilege binlog capture needs."""

    def __init__(self, setting, value, reason):
        exceptions.PublishError.__init__(
            self, 'MariaDB %s = %r: %s' % (setting, value, reason))
        self.option = setting
        self.value = value
        self.reason = reason


def _connection_settings(engine):
    url = engine.url
    settings = {'host': url.host or '127.0.0.1',
                'port': url.port or 3306,
                'user': url.username or 'root',
                'passwd': url.password or '',
                'charset': 'utf8mb4'}
    if url.query.get('unix_socket'):
        settings['unix_socket'] = url.query['unix_socket']
    return settings


def foreign_keys(engine, schema):
    """The foreign keys of ``schema``, for cascade detection.

    :returns: ``[(child, parent, parent_columns, on_delete, on_update)]``.
    """
    query = (
        'SELECT rc.CONSTRAINT_NAME, rc.TABLE_NAME, rc.REFERENCED_TABLE_NAME,'
        ' rc.DELETE_RULE, rc.UPDATE_RULE, k.REFERENCED_COLUMN_NAME'
        ' FROM information_schema.REFERENTIAL_CONSTRAINTS rc'
        ' JOIN information_schema.KEY_COLUMN_USAGE k'
        ' ON k.CONSTRAINT_SCHEMA = rc.CONSTRAINT_SCHEMA'
        ' AND k.CONSTRAINT_NAME = rc.CONSTRAINT_NAME'
        ' AND k.TABLE_NAME = rc.TABLE_NAME'
        ' WHERE rc.CONSTRAINT_SCHEMA = %s'
        ' ORDER BY rc.CONSTRAINT_NAME, k.ORDINAL_POSITION')
    keys = {}
    with engine.connect() as conn:
        for name, child, parent, on_delete, on_update, column in \
                conn.exec_driver_sql(query, (schema,)):
            entry = keys.setdefault((child, name), [
                child, parent, [], on_delete, on_update])
            entry[2].append(column)
    return [tuple(v) for v in keys.values()]


def _staged(engine, stream):
    """The stream's staged position ('' when none)."""
    from oslo_publish import outbox
    table = outbox.log_positions
    with engine.connect() as conn:
        return conn.execute(sa.select(table.c.position).where(
            table.c.stream == stream)).scalar() or ''


def catch_up(engine, stream, conf, published, timeout):
    """Wait until every transaction committed before this call is staged.

    :returns: the staged position.
    """
    reader = Reader(conf, engine, published, stream)
    with engine.connect() as conn:
        gtid = (conn.exec_driver_sql(
            'SELECT @@global.gtid_binlog_pos').scalar() or '').split(',')[0]
    if not gtid:
        return _staged(engine, stream)
    return reader.wait_staged_through(
        binlog_decode.position_of(binlog_decode.parse_gtid(gtid)), timeout)


def _variables(conn, names):
    rows = conn.exec_driver_sql(
        'SHOW GLOBAL VARIABLES WHERE Variable_name IN (%s)'
        % ', '.join("'%s'" % n for n in names)).fetchall()
    return {r[0].lower(): r[1] for r in rows}


class Reader(base.LogReader):
    """Reads the row binlog of the host's MariaDB/MySQL database.

    :param conf: the ConfigOpts (``[oslo_publish]`` options).
    :param engine: an Engine on the host database; the replica
        connection uses its host, port and credentials.
    :param published: ``{name: PublishedTable}``.
    :param stream: the stream name (for log messages).
    """

    def __init__(self, conf, engine, published, stream):
        super().__init__(conf, engine, dict(published), stream)
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
        with engine.connect() as conn:
            version = conn.exec_driver_sql('SELECT VERSION()').scalar()
            if 'mariadb' not in (version or '').lower():
                raise PrerequisiteError(
                    'version', version, 'the binlog reader follows MariaDB '
                    'GTIDs; MySQL servers are not supported yet')
            got = _variables(conn, list(REQUIRED) + [
                'server_id', 'gtid_binlog_state'])
            for name, accepted in REQUIRED.items():
                value = got.get(name)
                if value is None or value.upper() not in accepted:
                    raise PrerequisiteError(
                        name, value, 'binlog capture needs %s = %s'
                        % (name, accepted[0]))
            if not got.get('server_id') or got['server_id'] == '0':
                raise PrerequisiteError('server_id', got.get('server_id'),
                                        'the server needs a server_id')
            domains = {g.split('-')[0] for g in
                       (got.get('gtid_binlog_state') or '').split(',')
                       if g.strip()}
            if len(domains) > 1:
                raise PrerequisiteError(
                    'gtid_domain_id', ','.join(sorted(domains)),
                    'binlog capture reads one GTID domain; the binlog has '
                    'several')
            grants = ' '.join(r[0] for r in conn.exec_driver_sql(
                'SHOW GRANTS').fetchall()).upper()
            if 'ALL PRIVILEGES ON *.*' not in grants:
                for privilege in ('REPLICATION SLAVE', 'BINLOG MONITOR'):
                    alias = {'REPLICATION SLAVE': 'REPLICATION REPLICA',
                             'BINLOG MONITOR': 'REPLICATION CLIENT'}
                    if privilege not in grants and \
                            alias[privilege] not in grants:
                        raise PrerequisiteError(
                            'GRANT', privilege,
                            'the connecting user needs %s' % privilege)

    @classmethod
    def setup(cls, conf, engine, published, stream):
        """Nothing to create on the server; checks the settings.

        :returns: what the reader will read (for ``capture-setup``).
        """
        cls.check(engine)
        with engine.connect() as conn:
            gtid = conn.exec_driver_sql(
                'SELECT @@global.gtid_binlog_pos').scalar()
        return 'the row binlog of database %s (now at GTID %s)' % (
            engine.url.database, gtid or 'none')

    @classmethod
    def teardown(cls, conf, engine, published, stream):
        """Nothing to drop: the binlog is not reserved for a reader."""
        return 'nothing (the binlog belongs to the server)'

    # --------------------------------------------------------- the cut

    def cut_position(self, snapshot_conn):
        """The position of the last transaction visible to S, or ''.

        ``snapshot_conn`` (a SQLAlchemy Connection) holds S, opened with
        ``START TRANSACTION WITH CONSISTENT SNAPSHOT``: MariaDB then
        reports the binlog file and offset S corresponds to, which
        ``BINLOG_GTID_POS`` maps to the GTID of the last transaction
        before it. '' when the binlog holds no transaction yet.
        """
        status = dict(snapshot_conn.exec_driver_sql(
            "SHOW STATUS LIKE 'binlog_snapshot_%%'").fetchall())
        path = status.get('Binlog_snapshot_file')
        offset = status.get('Binlog_snapshot_position')
        if not path:
            raise PrerequisiteError('log_bin', 'OFF',
                                    'the server reports no binlog position '
                                    'for the snapshot')
        gtids = snapshot_conn.exec_driver_sql(
            'SELECT BINLOG_GTID_POS(%s, %s)',
            (path, int(offset))).scalar()
        if not gtids:
            return ''
        return binlog_decode.position_of(
            binlog_decode.parse_gtid(gtids.split(',')[0]))

    def wait_visible(self, conn, transactions, timeout=60.0):
        """Wait until ``transactions`` are visible to new snapshots.

        MariaDB writes a transaction to the binlog (and may send it to a
        replica) before InnoDB makes it visible. Staging waits here, so
        that every entry the relay numbers before a snapshot S opens is
        seen by S: a consistent snapshot taken now must report a binlog
        position at or after the last of them.
        """
        wanted = max((tx.position for tx in transactions if tx.changes),
                     default=None)
        if wanted is None:
            return
        deadline = time.monotonic() + timeout
        with self.engine.connect() as check:
            while True:
                check.exec_driver_sql(
                    'START TRANSACTION WITH CONSISTENT SNAPSHOT')
                try:
                    seen = self.cut_position(check)
                finally:
                    check.rollback()
                if seen >= wanted:
                    return
                if time.monotonic() > deadline:
                    raise exceptions.SnapshotError(
                        'binlog transaction %s stays invisible' % wanted)
                time.sleep(0.0005)

    def snapshot_cut(self, snapshot_conn, timeout=60.0):
        """The watermark's cut for the snapshot S held by ``snapshot_conn``.

        Works in any process (the stager may run elsewhere): the binlog
        between the stream's staged position and S's position is read
        for the last transaction with published changes, and this waits
        until the stream's staged position reaches it. Returns
        ``visible(entry)``: True for the staged outbox entries whose
        log position (``position``) is at or before S's.
        """
        cut = self.cut_position(snapshot_conn)
        self.wait_staged_through(cut, timeout)

        def visible(entry):
            return entry.position is not None and entry.position <= cut
        visible.position = cut
        return visible

    def wait_staged_through(self, position, timeout):
        """Wait until the published transactions to ``position`` are staged.

        The stream's staged position (which :class:`~.staging.Stager`
        records) must reach the last of them.
        """
        deadline = time.monotonic() + timeout
        while True:
            staged = _staged(self.engine, self.stream)
            if staged >= position:
                return staged
            if staged:
                try:
                    needed = self._last_published(staged, position,
                                                  deadline)
                except LogPositionLost:
                    needed = False   # the stager starts a new epoch
                if needed is None:
                    return staged
                if needed:
                    from oslo_publish.logcapture import staging
                    return staging.wait_staged(
                        self.engine, self.stream, needed,
                        max(deadline - time.monotonic(), 0.01))
            # Nothing staged yet (or the log lost): the stager records
            # its start position first.
            if time.monotonic() > deadline:
                raise exceptions.SnapshotError(
                    'the binlog reader of stream %s did not reach %s '
                    'within %ss (is oslo-publish-relay running?)'
                    % (self.stream, position, timeout))
            time.sleep(0.02)

    def _last_published(self, after, upto, deadline):
        """The last transaction with published changes in (after, upto].

        Reads that part of the binlog, up to the end of the transaction
        ``upto`` (which the binlog holds: it is the GTID of a committed
        transaction); None when there is none.
        """
        upto_seq = int(upto.split(' ', 1)[0])
        builder = binlog_decode.TransactionBuilder(
            self.tables, self.schema, self.engine.dialect,
            foreign_keys(self.engine, self.schema))
        stream = self._binlog_stream(
            binlog_decode.gtid_of(after) if after else '', blocking=True,
            server_id=random.randint(0x40000000, 0x7ffffffe),
            heartbeat=0.5)
        last = None
        try:
            for ev in stream:
                if time.monotonic() > deadline:
                    raise exceptions.SnapshotError(
                        'stream %s: the binlog up to %s was not read in '
                        'time' % (self.stream, upto))
                if isinstance(ev, binlog_event.MariadbGtidEvent) and \
                        ev.gtid_seq_no > upto_seq:
                    break
                done = self._feed(builder, stream, ev)
                if isinstance(done, base.LogTransaction) and done.changes:
                    last = done.position
                if done is not None and (
                        done if isinstance(done, str)
                        else done.position) >= upto:
                    break
        except pymysql.err.OperationalError as exc:
            if exc.args and exc.args[0] == \
                    ER_MASTER_FATAL_ERROR_READING_BINLOG:
                raise LogPositionLost(str(exc)) from exc
            raise
        finally:
            stream.close()
        return last

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
        return BinLogStreamReader(
            connection_settings=_connection_settings(self.engine),
            server_id=server_id or self._server_id(),
            blocking=blocking,
            is_mariadb=True,
            auto_position=gtid,
            only_schemas=[self.schema],
            only_events=events,
            pymysql_wrapper=self._connect,
            slave_heartbeat=heartbeat,
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
                    ER_MASTER_FATAL_ERROR_READING_BINLOG:
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
        """A published table's definition changed: resolve it again."""
        from oslo_publish import schema
        try:
            fresh = schema.resolve_tables(self.conf, engine=self.engine)
        except exceptions.ConfigError as exc:
            LOG.error('Stream %s: the published tables cannot be resolved '
                      'after DDL on %s: %s; keeping their old definition',
                      self.stream, ', '.join(names), exc)
            return
        tables = dict(self.tables)
        for name in names:
            if name in fresh:
                new = self._merged(tables[name], fresh[name])
                if new.version != tables[name].version:
                    LOG.info('Stream %s: table %s now has schema version %s',
                             self.stream, name, new.version)
                tables[name] = new
        self.tables = tables
        self.builder.set_published(tables)
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
