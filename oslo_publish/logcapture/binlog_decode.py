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

"""MariaDB row binlog events -> :class:`~.base.LogTransaction`.

A :class:`TransactionBuilder` is fed the events of the binlog in order
(the ``pymysqlreplication`` event objects) and returns a transaction
when one ends: a GTID event opens it, the XID event (or, for a
standalone group such as DDL, the end of its one statement, or a
``COMMIT`` query of a non-transactional engine) closes it.

Rows are consolidated per primary key exactly as session capture does,
by the readers' common :class:`~oslo_publish.logcapture.rows.
TransactionBuilder` (insert then update is one insert of the final
image, insert then delete is nothing, a primary-key change is a delete
and an insert, an update that changes no published column is nothing).
Values are taken from the binlog's row images (which
carry what the database stores, the raw form a DB-API driver returns),
run through the column's SQLAlchemy result processing for the MySQL
dialect (a ``JSON`` text is parsed, an ``Enum`` becomes its member, a
``TINYINT(1)`` a ``bool``...) and encoded by the table's
:class:`~oslo_publish.codec.ColumnCodec`: the same values the other
paths publish.

What cannot be published exactly becomes a table invalidation at that
transaction (never a wrong row): DDL or ``TRUNCATE`` of a published
table (cause ``schema_change`` / ``truncate``); a delete (or a key
update) of a row whose foreign keys cascade into a published table
(cause ``cascade``: InnoDB makes the cascaded changes itself and the
binlog does not carry them); a row image whose
columns are not the published table's (``schema_change``), a value the
binlog could not decode or the wire cannot encode (``unencodable``).
Columns a row image has beyond the published ones (excluded columns, a
column added after the table was resolved) are dropped.
"""

import datetime
import re
import uuid

from oslo_log import log

from oslo_publish import wire
from oslo_publish.logcapture import base
from oslo_publish.logcapture import rows as rows_mod

LOG = log.getLogger(__name__)

_UTC = datetime.timezone.utc

#: oslo.publish's own tables (outbox, stream positions): their writes are
#: the pipeline's bookkeeping, never published nor reported as progress.
OWN_PREFIX = 'oslo_publish_'

#: Foreign-key actions that change the referencing rows.
CHANGING_ACTIONS = frozenset(('CASCADE', 'SET NULL', 'SET DEFAULT'))

#: Statements that change a table's definition or empty it, with the
#: (optionally schema-qualified, optionally quoted) table names they name.
_NAME = r'(?:`[^`]+`|[A-Za-z0-9_$]+)(?:\s*\.\s*(?:`[^`]+`|[A-Za-z0-9_$]+))?'
_DDL = re.compile(
    r'^\s*(ALTER|CREATE|DROP|RENAME|TRUNCATE)\s+'
    r'(?:(?:ONLINE|IGNORE|OR\s+REPLACE|TEMPORARY)\s+)*'
    r'(TABLES?\s+)?(?:IF\s+(?:NOT\s+)?EXISTS\s+)?(.*)$',
    re.IGNORECASE | re.DOTALL)
_NAMES = re.compile(_NAME)
_RENAME = re.compile(r'\bRENAME\s+(?!COLUMN\b|INDEX\b|KEY\b)'
                     r'(?:TO\s+|AS\s+)?(%s)' % _NAME, re.IGNORECASE)


def ddl_tables(query, default_schema):
    """``(verb, [(schema, table), ...])`` of a table DDL, else None.

    ``ALTER``/``CREATE``/``DROP``/``RENAME TABLE`` and ``TRUNCATE``;
    names without a schema are in ``default_schema`` (the query event's
    current database).
    """
    match = _DDL.match(query)
    if match is None:
        return None
    verb, table_kw, rest = match.group(1).upper(), match.group(2), \
        match.group(3)
    if not table_kw and verb != 'TRUNCATE':
        return None  # CREATE INDEX, DROP VIEW, ALTER USER...: not tables
    if verb in ('DROP', 'RENAME'):
        # DROP TABLE a, b / RENAME TABLE a TO b, c TO d
        parts = re.split(r',|\bTO\b', rest, flags=re.IGNORECASE)
        names = [_NAMES.search(p).group(0) for p in parts
                 if _NAMES.search(p)]
    else:
        found = _NAMES.match(rest.strip())
        names = [found.group(0)] if found else []
        renamed = _RENAME.search(rest) if verb == 'ALTER' else None
        if renamed:
            names.append(renamed.group(1))  # ALTER TABLE a RENAME TO b
    out = []
    for name in names:
        parts = [p.strip().strip('`') for p in name.split('.')]
        out.append((parts[0], parts[1]) if len(parts) == 2
                   else (default_schema, parts[0]))
    return verb, out


class _Unencodable(Exception):
    pass


class _Tx(object):
    """The transaction being read."""

    def __init__(self, gtid, standalone):
        self.gtid = gtid
        self.standalone = standalone
        self.rows = None          # rows.TransactionBuilder, set by begin()
        self.invalid = {}
        self.own_rows = False     # rows of oslo.publish's own tables
        self.other_rows = False   # rows of any other table


class TransactionBuilder(object):
    """Assembles and encodes the transactions of one database's binlog.

    :param published: ``{name: PublishedTable}`` (replaced by
        :meth:`set_published` after a schema change).
    :param schema: the database (MariaDB schema) the tables live in.
    :param dialect: the engine's SQLAlchemy dialect (for the columns'
        result processing).
    :param foreign_keys: ``[(child, parent, parent_columns, on_delete,
        on_update), ...]``, the schema's foreign keys (see
        :meth:`set_foreign_keys`).
    """

    def __init__(self, published, schema, dialect, foreign_keys=()):
        self.schema = schema
        self.dialect = dialect
        self.tx = None
        self.set_published(published)
        self.set_foreign_keys(foreign_keys)

    def set_foreign_keys(self, foreign_keys):
        """Learn which deletes and key updates cascade where.

        ``{parent: [(parent_columns, on_delete, on_update, children)]}``
        where ``children`` are the published tables the action reaches,
        directly or through further cascading keys.
        """
        self._foreign_keys = list(foreign_keys)
        edges = {}
        for child, parent, columns, on_delete, on_update in foreign_keys:
            edges.setdefault(parent, []).append(
                (child, tuple(columns), on_delete.upper(),
                 on_update.upper()))

        def reached(table, seen):
            out = set()
            if table in seen:
                return out
            seen.add(table)
            if table in self.published:
                out.add(table)
            for child, _, on_delete, on_update in edges.get(table, ()):
                if on_delete in CHANGING_ACTIONS or \
                        on_update in CHANGING_ACTIONS:
                    out |= reached(child, seen)
            return out

        self.cascades = {}
        for parent, children in edges.items():
            for child, columns, on_delete, on_update in children:
                if on_delete not in CHANGING_ACTIONS and \
                        on_update not in CHANGING_ACTIONS:
                    continue
                hit = reached(child, set())
                if hit:
                    self.cascades.setdefault(parent, []).append(
                        (columns, on_delete, on_update, frozenset(hit)))

    def set_published(self, published):
        self.published = dict(published)
        self.processors = {}
        for name, pt in self.published.items():
            procs = {}
            for column in pt.columns:
                try:
                    procs[column] = pt.table.c[column].type.result_processor(
                        self.dialect, None)
                except Exception as exc:  # noqa: a type without one
                    LOG.debug('No result processor for %s.%s: %s',
                              name, column, exc)
                    procs[column] = None
            self.processors[name] = procs
        if hasattr(self, '_foreign_keys'):
            self.set_foreign_keys(self._foreign_keys)

    # ----------------------------------------------------------- events

    def begin(self, gtid, standalone):
        """A GTID event: ``gtid`` ``(domain, server_id, seq_no)``."""
        if self.tx is not None:
            LOG.warning('Binlog transaction %s has no end; dropped',
                        format_gtid(self.tx.gtid))
        self.tx = _Tx(gtid, standalone)
        self.tx.rows = rows_mod.TransactionBuilder(self.published)

    def rows_event(self, kind, table, rows):
        """A write/update/delete rows event of ``table`` in our schema.

        :param rows: the row images, or a callable returning them: the
            rows of tables that are neither published nor cascade into
            one (the outbox's payloads among them) are never decoded.
        """
        if self.tx is None:
            return
        tx = self.tx
        if table.startswith(OWN_PREFIX):
            tx.own_rows = True
        else:
            tx.other_rows = True
        published = table in self.published and table not in tx.invalid
        if not published and table not in self.cascades:
            return
        if callable(rows):
            rows = rows()
        if table in self.cascades:
            self._cascade(tx, kind, table, rows)
        if not published or table in tx.invalid:
            return
        pt = self.published[table]
        for row in rows:
            try:
                if kind == wire.UPDATE:
                    before = self._image(pt, row['before_values'],
                                         row.get('before_none_sources'))
                    after = self._image(pt, row['after_values'],
                                        row.get('after_none_sources'))
                elif kind == wire.INSERT:
                    before, after = None, self._image(
                        pt, row['values'], row.get('none_sources'))
                else:
                    before, after = self._image(
                        pt, row['values'], row.get('none_sources')), None
            except _Unencodable as exc:
                LOG.warning('Invalidating published table %s in binlog '
                            'transaction %s: %s', table,
                            format_gtid(tx.gtid), exc.args[0])
                self._invalidate(tx, table, exc.args[1])
                return
            tx.rows.add(table, kind, before, after)

    def _cascade(self, tx, kind, table, rows):
        for columns, on_delete, on_update, children in self.cascades[table]:
            if kind == wire.DELETE:
                hit = on_delete in CHANGING_ACTIONS
            elif kind == wire.UPDATE and on_update in CHANGING_ACTIONS:
                hit = any(row['before_values'].get(c) !=
                          row['after_values'].get(c)
                          for row in rows for c in columns)
            else:
                hit = False
            if hit:
                for child in children:
                    if child not in tx.invalid:
                        LOG.debug('A %s of %s cascades into published '
                                  'table %s: invalidated', kind, table,
                                  child)
                        self._invalidate(tx, child, 'cascade')

    def query(self, query, default_schema):
        """A query event: DDL of a published table, or a ``COMMIT``.

        :returns: the names of the published tables whose definition
            changed (the caller re-learns them), and the transaction
            when the statement ended it.
        """
        if self.tx is None:
            return (), None
        text = query.strip()
        if text.upper() == 'COMMIT':
            return (), True
        parsed = ddl_tables(text, default_schema)
        changed = []
        if parsed is not None:
            verb, names = parsed
            for schema, table in names:
                if schema == self.schema and table in self.published:
                    cause = 'truncate' if verb == 'TRUNCATE' \
                        else 'schema_change'
                    self._invalidate(self.tx, table, cause)
                    if verb != 'TRUNCATE':
                        changed.append(table)
        return changed, self.tx.standalone

    def end(self, position, xid, when):
        """The XID event (or end of a standalone group): the transaction.

        :returns: a :class:`~.base.LogTransaction` (its ``changes``
            empty when it touched no published table), or None for a
            transaction that only wrote oslo.publish's own tables.
        """
        tx, self.tx = self.tx, None
        if tx is None:
            return None
        changes, tables = tx.rows.finish()
        if not changes and tx.own_rows and not tx.other_rows:
            return None
        committed_at = datetime.datetime.fromtimestamp(when, _UTC)
        return base.LogTransaction(
            position=position, xid=xid, committed_at=committed_at,
            changes=changes, tables=tables)

    # ------------------------------------------------------------- rows

    @staticmethod
    def _invalidate(tx, table, cause):
        if table not in tx.invalid:
            tx.invalid[table] = cause
            tx.rows.invalidate(table, cause)

    def _image(self, pt, values, none_sources):
        """The published columns of a binlog row image, processed."""
        missing = [c for c in pt.columns if c not in values]
        if missing:
            # Columns the row lacks: the table changed under us.
            raise _Unencodable(
                'the binlog row lacks published columns %s'
                % ', '.join(missing), 'schema_change')
        procs = self.processors[pt.name]
        out = {}
        for column in pt.columns:
            value = values[column]
            if value is None:
                source = (none_sources or {}).get(column)
                if source not in (None, 'null'):
                    raise _Unencodable(
                        'column %s: the binlog has no value (%s)'
                        % (column, source), 'unencodable')
            else:
                if isinstance(value, bytes) and len(value) == 16 and \
                        pt.codecs[column].kind == 'uuid':
                    # MariaDB's native UUID: 16 bytes in the binlog,
                    # its text form from a driver.
                    value = str(uuid.UUID(bytes=value))
                proc = procs[column]
                if proc is not None:
                    try:
                        value = proc(value)
                    except Exception as exc:  # noqa: any type's failure
                        raise _Unencodable(
                            'column %s: %s' % (column, exc), 'unencodable')
            out[column] = value
        return out


def format_gtid(gtid):
    return '%d-%d-%d' % gtid


def parse_gtid(text):
    """``'0-1-5'`` -> ``(0, 1, 5)``."""
    domain, server, seq = (int(p) for p in text.strip().split('-'))
    return domain, server, seq


def position_of(gtid):
    """The position text of a GTID: sorts by sequence number.

    ``'00000000000000000005 0-1-5'``: the zero-padded ``seq_no`` first
    (MariaDB numbers the transactions of a GTID domain in binlog order,
    which is commit order, and keeps counting across a change of
    ``server_id``), then the GTID itself, which is what a restart sends
    the server as the replica's position.
    """
    return '%020d %s' % (gtid[2], format_gtid(gtid))


def gtid_of(position):
    """The GTID text of a position (inverse of :func:`position_of`)."""
    return position.split(' ', 1)[1] if ' ' in position else position
