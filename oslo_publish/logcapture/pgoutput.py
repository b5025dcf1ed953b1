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

"""PostgreSQL logical decoding with the built-in ``pgoutput`` plugin.

``oslo-publish-manage capture-setup`` creates, per stream, a publication
of the allow-listed tables (``oslo_publish_<stream>``), sets their
``REPLICA IDENTITY FULL`` (so an update or delete carries the full old
row: the ``before`` image, and the old value of an unchanged TOASTed
column, which pgoutput does not resend) and a logical replication slot
of the same name. :class:`Reader` streams the slot through psycopg2's
replication protocol (protocol version 1, with logical messages for the
snapshot watermark), turns the text values of each row into the Python
values a ``SELECT`` returns (psycopg2's own typecasters, by type OID),
and hands whole committed transactions to the staging step.

The position of a transaction is the end LSN of its commit record as 16
hex digits; confirming it moves the slot's ``confirmed_flush_lsn``.
"""

import contextlib
import datetime
import re
import select
import struct
import time
import uuid

from oslo_log import log
import sqlalchemy as sa

from oslo_publish import exceptions
from oslo_publish.logcapture import base
from oslo_publish.logcapture import rows as rows_mod
from oslo_publish import schema

LOG = log.getLogger(__name__)

#: Prefix of the logical messages the snapshot watermark emits.
MARK_PREFIX = 'oslo_publish.mark'
_PG_EPOCH = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
_NAME = re.compile(r'[^a-z0-9_]+')
_UNCHANGED = object()


def object_name(stream):
    """The slot and publication name of ``stream`` (PostgreSQL rules)."""
    name = 'oslo_publish_' + _NAME.sub('_', stream.lower())
    if len(name) > 63:
        name = name[:46] + '_' + uuid.uuid5(uuid.NAMESPACE_OID,
                                            stream).hex[:16]
    return name


def lsn_text(lsn):
    """An LSN (int) as a position: 16 hex digits, sorting as text."""
    return '%016X' % lsn


def lsn_int(text):
    """A position or a PostgreSQL ``X/Y`` LSN as an int."""
    if '/' in text:
        high, low = text.split('/')
        return (int(high, 16) << 32) | int(low, 16)
    return int(text, 16)


# --------------------------------------------------------------- protocol

class _Buf(object):
    __slots__ = ('data', 'pos')

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def unpack(self, fmt):
        got = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return got

    def byte(self):
        value = self.data[self.pos:self.pos + 1]
        self.pos += 1
        return value

    def string(self):
        end = self.data.index(b'\0', self.pos)
        value = self.data[self.pos:end].decode('utf-8')
        self.pos = end + 1
        return value

    def tuple(self):
        (count,) = self.unpack('!h')
        values = []
        for _ in range(count):
            kind = self.byte()
            if kind == b'n':
                values.append(None)
            elif kind == b'u':
                values.append(_UNCHANGED)
            elif kind in (b't', b'b'):
                (size,) = self.unpack('!i')
                raw = self.data[self.pos:self.pos + size]
                self.pos += size
                values.append(raw.decode('utf-8') if kind == b't' else raw)
            else:
                raise ValueError('unknown tuple column kind %r' % kind)
        return values


def _timestamp(micros):
    return _PG_EPOCH + datetime.timedelta(microseconds=micros)


def parse(payload):
    """One pgoutput message -> a tuple ``(kind, ...)`` (protocol 1).

    ``('B', final_lsn, committed_at, xid)``, ``('C', commit_lsn,
    end_lsn, committed_at)``, ``('R', oid, namespace, name,
    [(column, type_oid)])``, ``('I', oid, new)``, ``('U', oid, old or
    None, new)``, ``('D', oid, old)``, ``('T', [oid, ...])``, ``('M',
    transactional, lsn, prefix, content)``; other kinds -> ``(kind,)``.
    """
    buf = _Buf(bytes(payload))
    kind = buf.byte().decode('ascii')
    if kind == 'B':
        lsn, ts, xid = buf.unpack('!QqI')
        return ('B', lsn, _timestamp(ts), xid)
    if kind == 'C':
        _flags, lsn, end, ts = buf.unpack('!bQQq')
        return ('C', lsn, end, _timestamp(ts))
    if kind == 'R':
        (oid,) = buf.unpack('!I')
        namespace, name = buf.string(), buf.string()
        _identity, count = buf.unpack('!bh')
        columns = []
        for _ in range(count):
            buf.unpack('!b')
            column = buf.string()
            type_oid, _mod = buf.unpack('!Ii')
            columns.append((column, type_oid))
        return ('R', oid, namespace, name, columns)
    if kind == 'I':
        (oid,) = buf.unpack('!I')
        buf.byte()  # 'N'
        return ('I', oid, buf.tuple())
    if kind == 'U':
        (oid,) = buf.unpack('!I')
        mark = buf.byte()
        old = None
        if mark in (b'K', b'O'):
            old = buf.tuple() if mark == b'O' else None
            if mark == b'K':
                buf.tuple()
            mark = buf.byte()
        return ('U', oid, old, buf.tuple())
    if kind == 'D':
        (oid,) = buf.unpack('!I')
        mark = buf.byte()
        old = buf.tuple()
        return ('D', oid, old if mark == b'O' else None)
    if kind == 'T':
        count, _options = buf.unpack('!ib')
        return ('T', list(buf.unpack('!%dI' % count)) if count else [])
    if kind == 'M':
        flags, lsn = buf.unpack('!bQ')
        prefix = buf.string()
        (size,) = buf.unpack('!i')
        content = buf.data[buf.pos:buf.pos + size]
        return ('M', bool(flags & 1), lsn, prefix,
                content.decode('utf-8', 'replace'))
    return (kind,)


# ------------------------------------------------------------- the reader

def _connect_args(engine):
    url = engine.url
    args = url.translate_connect_args(username='user', database='dbname')
    args.update({k: v for k, v in url.query.items()
                 if isinstance(v, str)})
    return args


class _Relation(object):
    __slots__ = ('name', 'columns', 'casts')

    def __init__(self, name, columns, casts):
        self.name = name
        self.columns = columns
        self.casts = casts


class Reader(base.LogReader):
    """Streams the stream's slot; see the module docstring."""

    #: Seconds the watermark waits for the staging step to pass its mark.
    cut_timeout = 60.0

    def __init__(self, conf, engine, published, stream):
        super().__init__(conf, engine, published, stream)
        self.name = object_name(stream)
        self._conn = self._cur = None
        self._cast_conn = None
        self._relations = {}
        self._tx = None
        self._returned = 0
        self._confirmed = 0
        self._by_name = {}
        #: {published table: column names of its last Relation message},
        #: kept across reconnects: a change of them is a DDL.
        self._defined = {}
        for name, pt in published.items():
            table = pt.table
            full = '%s.%s' % (table.schema or 'public', table.name)
            self._by_name[full] = name

    # ------------------------------------------------------- management

    @classmethod
    def check(cls, engine):
        with engine.connect() as conn:
            level = conn.exec_driver_sql('SHOW wal_level').scalar()
            version = conn.exec_driver_sql(
                'SHOW server_version_num').scalar()
        if level != 'logical':
            raise exceptions.ConfigError(
                'capture', 'logical', 'PostgreSQL runs with wal_level = '
                '%s; wal_level must be logical (postgresql.conf, then '
                'restart the server)' % level)
        if int(version) < 140000:
            raise exceptions.ConfigError(
                'capture', 'logical', 'PostgreSQL 14 or newer is needed '
                '(pgoutput logical messages); the server is %s' % version)

    @classmethod
    def setup(cls, conf, engine, published, stream):
        cls.check(engine)
        name = object_name(stream)
        tables = ', '.join(_quoted(engine, pt.table)
                           for pt in published.values())
        with engine.begin() as conn:
            for pt in published.values():
                conn.exec_driver_sql('ALTER TABLE %s REPLICA IDENTITY FULL'
                                     % _quoted(engine, pt.table))
            exists = conn.exec_driver_sql(
                'SELECT 1 FROM pg_publication WHERE pubname = %(n)s',
                {'n': name}).first()
            if exists and tables:
                conn.exec_driver_sql('ALTER PUBLICATION %s SET TABLE %s'
                                     % (name, tables))
            elif not exists:
                conn.exec_driver_sql('CREATE PUBLICATION %s%s' % (
                    name, ' FOR TABLE %s' % tables if tables else ''))
        with _autocommit(engine) as conn:
            if not _slot_exists(conn, name):
                _create_slot(conn, name)
        LOG.info('Publication and slot %s ready for tables %s', name,
                 ', '.join(sorted(published)))
        return name

    @classmethod
    def teardown(cls, conf, engine, published, stream):
        name = object_name(stream)
        with _autocommit(engine) as conn:
            _drop_slot_if_exists(conn, name)
            conn.exec_driver_sql('DROP PUBLICATION IF EXISTS %s' % name)
        return name

    @classmethod
    def reset_log(cls, conf, engine, published, stream):
        """Drop and create the slot only (the relay's privileges)."""
        name = object_name(stream)
        with _autocommit(engine) as conn:
            _drop_slot_if_exists(conn, name)
            _create_slot(conn, name)

    # ------------------------------------------------------------ stream

    def start(self, after_position):
        import psycopg2
        from psycopg2 import extras
        self.close()
        args = _connect_args(self.engine)
        self._cast_conn = psycopg2.connect(**args)
        self._cast_conn.autocommit = True
        self._conn = psycopg2.connect(
            connection_factory=extras.LogicalReplicationConnection, **args)
        self._cur = self._conn.cursor()
        start = lsn_int(after_position) if after_position else 0
        try:
            self._cur.start_replication(
                slot_name=self.name, decode=False, start_lsn=start,
                options={'proto_version': '1',
                         'publication_names': self.name,
                         'messages': 'true'})
        except psycopg2.Error as exc:
            text = str(exc)
            self.close()
            if 'can no longer get changes' in text or \
                    'has already been removed' in text or \
                    'invalidated' in text:
                raise base.LogLost(text) from exc
            raise
        self._relations = {}
        self._tx = None
        self._returned = self._confirmed = start

    def read(self, timeout):
        out = []
        deadline = time.monotonic() + timeout
        cur = self._cur
        while True:
            msg = cur.read_message()
            if msg is None:
                if out:
                    return out
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._idle_feedback()
                    return out
                select.select([cur], [], [], min(remaining, 1.0))
                continue
            got = self._handle(msg)
            if got is not None:
                out.append(got)
                if len(out) >= 1000:
                    return out

    def _idle_feedback(self):
        """Let an idle slot move up to what the server already sent.

        Only with nothing in flight and everything returned confirmed, so
        the traffic of unpublished tables does not pile up WAL.
        """
        wal_end = getattr(self._cur, 'wal_end', 0) or 0
        if self._tx is None and self._returned <= self._confirmed and \
                wal_end > self._confirmed:
            self._confirmed = self._returned = wal_end
            self._cur.send_feedback(flush_lsn=wal_end)

    def _handle(self, msg):
        parsed = parse(msg.payload)
        kind = parsed[0]
        tx = self._tx
        if kind == 'B':
            self._tx = [parsed[3], parsed[2],
                        rows_mod.TransactionBuilder(self.tables)]
        elif kind == 'R':
            self._relation(*parsed[1:])
        elif kind in ('I', 'U', 'D') and tx is not None:
            self._row(tx[2], parsed)
        elif kind == 'T' and tx is not None:
            for oid in parsed[1]:
                rel = self._relations.get(oid)
                if rel is not None and rel.name is not None:
                    tx[2].invalidate(rel.name, 'truncate')
        elif kind == 'C' and tx is not None:
            self._tx = None
            end = parsed[2]
            self._returned = end
            changes, tables = tx[2].finish()
            return base.LogTransaction(lsn_text(end), tx[0], tx[1],
                                       changes, tables)
        elif kind == 'M' and not parsed[1] and parsed[3] == MARK_PREFIX:
            # A watermark mark, outside any transaction: its position is
            # staged so the snapshot server knows the reader passed it.
            lsn = max(parsed[2], msg.data_start)
            self._returned = max(self._returned, lsn)
            return base.LogTransaction(lsn_text(lsn), None, None, [], {})
        return None

    def _relation(self, oid, namespace, name, columns):
        published = self._by_name.get('%s.%s' % (namespace, name))
        casts = [self._caster(type_oid) for _, type_oid in columns]
        names = [c for c, _ in columns]
        if published is not None:
            # Only a change of the database's definition reloads. The
            # first Relation is the baseline, whatever the host's model
            # maps: during expand / contract the model lags or leads the
            # database on purpose, and reloading on that difference
            # would publish a version neither the model, the snapshot
            # server nor the later database has (e.g. the contract
            # step's dropped column back in, until it is dropped).
            before = self._defined.get(published)
            self._defined[published] = set(names)
            if before is not None and before != set(names):
                self._reload(published, self.tables[published])
        self._relations[oid] = _Relation(published, names, casts)

    def _reload(self, name, pt):
        """The table's columns changed (DDL): publish the new version."""
        table = sa.Table(pt.table.name, sa.MetaData(),
                         schema=pt.table.schema, autoload_with=self.engine)
        excluded = [c for c in pt.excluded if c in table.c]
        new = schema.PublishedTable(name, table, excluded, table,
                                    'postgresql')
        LOG.info('Table %(table)s changed: schema version %(old)s -> '
                 '%(new)s', {'table': name, 'old': pt.version,
                             'new': new.version})
        self.tables[name] = new

    def _caster(self, type_oid):
        from psycopg2 import extensions
        caster = extensions.string_types.get(type_oid)
        if caster is None:
            return None
        cur = self._cast_conn.cursor()
        return lambda text: caster(text, cur)

    def _image(self, rel, values, old=None):
        row = {}
        for column, cast, value in zip(rel.columns, rel.casts, values):
            if value is _UNCHANGED:
                if old is None or column not in old:
                    raise LookupError(column)
                row[column] = old[column]
            elif value is None or cast is None:
                row[column] = value
            else:
                row[column] = cast(value)
        return row

    def _row(self, builder, parsed):
        kind, oid = parsed[0], parsed[1]
        rel = self._relations.get(oid)
        if rel is None or rel.name is None:
            return
        try:
            if kind == 'I':
                builder.add(rel.name, rows_mod.INSERT, None,
                            self._image(rel, parsed[2]))
            elif kind == 'U':
                if parsed[2] is None:
                    # No old row: the table lost REPLICA IDENTITY FULL.
                    builder.invalidate(rel.name, 'no_before_image')
                    return
                old = self._image(rel, parsed[2])
                builder.add(rel.name, rows_mod.UPDATE, old,
                            self._image(rel, parsed[3], old))
            else:
                if parsed[2] is None:
                    builder.invalidate(rel.name, 'no_before_image')
                    return
                builder.add(rel.name, rows_mod.DELETE,
                            self._image(rel, parsed[2]), None)
        except (LookupError, ValueError) as exc:
            LOG.warning('Invalidating published table %s: incomplete row '
                        'in the log (%s)', rel.name, exc)
            builder.invalidate(rel.name, 'incomplete_image')

    def confirm(self, position):
        lsn = lsn_int(position)
        if lsn > self._confirmed and self._cur is not None:
            self._confirmed = lsn
            self._cur.send_feedback(flush_lsn=lsn)

    def lag(self):
        with self.engine.connect() as conn:
            return conn.exec_driver_sql(
                'SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '
                'confirmed_flush_lsn)::bigint FROM pg_replication_slots '
                'WHERE slot_name = %(n)s', {'n': self.name}).scalar()

    def close(self):
        for conn in (self._conn, self._cast_conn):
            if conn is not None:
                try:
                    conn.close()
                except Exception:  # noqa: closing a broken connection
                    pass
        self._conn = self._cur = self._cast_conn = None

    # --------------------------------------------------------- watermark

    def snapshot_cut(self, snapshot_conn):
        snap = snapshot_conn.exec_driver_sql(
            'SELECT pg_current_snapshot()::text').scalar()
        sees = visibility(snap)
        catch_up(self.engine, self.stream, self.cut_timeout)
        return lambda entry: entry.xid is not None and sees(entry.xid)

    def wait_visible(self, conn, transactions, timeout=60.0):
        """Wait until every one of ``transactions`` is visible.

        PostgreSQL writes (and flushes) a commit record before the
        transaction becomes visible to new snapshots, so the log can
        show a commit a snapshot taken right after does not see. Staging
        waits for visibility, so that every entry the relay numbered
        before a snapshot S opened is seen by S (the watermark).
        """
        if self.visible_in(transactions, None):
            return
        base.wait_until(
            lambda: self.visible_in(transactions, conn.exec_driver_sql(
                'SELECT pg_current_snapshot()::text').scalar()),
            timeout, lambda: invisible(transactions))

    @staticmethod
    def visible_in(transactions, snapshot):
        """True when ``snapshot`` sees every one of ``transactions``.

        :param snapshot: a ``pg_current_snapshot()`` text; None: True
            only when no transaction with changes has an xid.
        """
        xids = [tx.xid for tx in transactions
                if tx.xid is not None and tx.changes]
        if not xids:
            return True
        if snapshot is None:
            return False
        sees = visibility(snapshot)
        return all(sees(xid) for xid in xids)


def invisible(transactions):
    """The error of a visibility wait that ran out of time."""
    return RuntimeError('transactions %s stay invisible'
                        % [tx.xid for tx in transactions])


def visibility(snapshot):
    """A predicate ``sees(xid)`` for a ``pg_current_snapshot()`` text.

    ``xid`` is the 32-bit transaction id of the log (pgoutput's BEGIN);
    it is widened to the snapshot's 64-bit epoch.
    """
    xmin, xmax, xip = snapshot.split(':')
    xmin, xmax = int(xmin), int(xmax)
    running = frozenset(int(x) for x in xip.split(',') if x)
    epoch_base = xmax & ~0xFFFFFFFF

    def sees(xid):
        # The 32-bit id is within 2**31 of xmax (PostgreSQL's wraparound
        # horizon): widen it to the nearest 64-bit id.
        full = epoch_base | (xid & 0xFFFFFFFF)
        if full > xmax + (1 << 31):
            full -= 1 << 32
        elif full < xmax - (1 << 31):
            full += 1 << 32
        return full < xmin or (full < xmax and full not in running)
    return sees


def catch_up(engine, stream, timeout):
    """Wait until every transaction committed before this call is staged.

    Emits a non-transactional logical message (its LSN is after every
    commit so far) and waits for the stream's staged position to pass
    it. Works from any process: the stager records the mark's position.

    :returns: the staged position.
    :raises SnapshotError: the stager did not get there in ``timeout``.
    """
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level='AUTOCOMMIT')
        mark = conn.exec_driver_sql(
            'SELECT pg_logical_emit_message(false, %(p)s, %(t)s)::text',
            {'p': MARK_PREFIX, 't': uuid.uuid4().hex}).scalar()
    from oslo_publish.logcapture import staging
    return staging.wait_staged(engine, stream, lsn_text(lsn_int(mark)),
                               timeout)


def _quoted(engine, table):
    prep = engine.dialect.identifier_preparer
    return prep.format_table(table)


@contextlib.contextmanager
def _autocommit(engine):
    # Slot functions cannot run inside a transaction block that wrote.
    with engine.connect() as conn:
        yield conn.execution_options(isolation_level='AUTOCOMMIT')


def _slot_exists(conn, name):
    return conn.exec_driver_sql(
        'SELECT 1 FROM pg_replication_slots WHERE slot_name = %(n)s',
        {'n': name}).first() is not None


def _create_slot(conn, name):
    conn.exec_driver_sql(
        "SELECT pg_create_logical_replication_slot(%(n)s, 'pgoutput')",
        {'n': name})


def _drop_slot_if_exists(conn, name):
    if _slot_exists(conn, name):
        conn.exec_driver_sql('SELECT pg_drop_replication_slot(%(n)s)',
                             {'n': name})
