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


"""Statements executed through the session (``do_orm_execute``).

ORM bulk ``UPDATE``/``DELETE`` (``Query.update/delete``, oslo.db's
``soft_delete`` and ``update_on_match``) and Core
``insert()/update()/delete()``: the affected rows are selected and locked
(``FOR UPDATE``; the write lock on SQLite) before the statement, the
statement is restricted to exactly those rows, and after-images come from
``RETURNING`` where the database has it for that statement, else from one
read by primary key. ``INSERT ... SELECT`` is captured through
``RETURNING`` where the database has it.

What cannot be captured exactly invalidates the table in this
transaction's delta, never failing the statement: upserts (``upsert``),
``INSERT ... SELECT`` without ``INSERT ... RETURNING``
(``insert_from_select``), an UPDATE changing primary keys (``pk_update``),
an INSERT whose keys cannot be known (``insert_no_key``), DML in
``text()`` (``text_dml``) and any unexpected error (``capture_error``).
"""

import re

from oslo_log import log
import sqlalchemy as sa

from oslo_publish.capture import frames
from oslo_publish.capture import rows as rows_mod
from oslo_publish import wire

LOG = log.getLogger(__name__)

_TEXT_DML = re.compile(
    r'^\s*(?:with\b.*?\)\s*)?(?:insert(?:\s+or\s+\w+)?(?:\s+ignore)?\s+into'
    r'|replace\s+into|update(?:\s+or\s+\w+)?|delete\s+from|merge\s+into'
    r'|truncate(?:\s+table)?)\s+((?:[`"\[]?\w+[`"\]]?\.)?[`"\[]?\w+)',
    re.IGNORECASE | re.DOTALL)


def text_dml_tables(sql):
    """The table a DML statement in ``sql`` writes, or None."""
    match = _TEXT_DML.match(sql)
    if match is None:
        return None
    return re.sub(r'[`"\[\]]', '', match.group(1))


class _Fallback(Exception):
    """Exact capture is impossible: invalidate with ``cause``."""

    def __init__(self, cause):
        super().__init__(cause)
        self.cause = cause


class StatementMixin(object):
    """The ``do_orm_execute`` listener."""

    def _on_do_orm_execute(self, orm_state):
        if orm_state.is_select:
            return None
        stmt = orm_state.statement
        if isinstance(stmt, sa.TextClause):
            return self._text(orm_state, stmt)
        is_insert = orm_state.is_insert
        if not (is_insert or orm_state.is_update or orm_state.is_delete):
            return None
        table = getattr(stmt, 'table', None)
        pt = self._published(table)
        if pt is None:
            return None
        session = orm_state.session
        if orm_state.is_orm_statement and session.autoflush and \
                orm_state.execution_options.get('autoflush', True):
            session.flush()
        try:
            conn = session.connection(
                bind_arguments=orm_state.bind_arguments or None)
            if is_insert:
                prepared = self._prepare_insert(orm_state, pt, table, conn)
            else:
                prepared = self._prepare_update_delete(orm_state, pt, table,
                                                       conn)
        except _Fallback as fb:
            self._invalidate(session, [pt.name], fb.cause)
            return None
        except Exception as exc:  # noqa: never fail the host's statement
            self._invalidate(session, [pt.name], 'capture_error', exc)
            return None
        statement, finish = prepared
        # The host's own statement: its errors are the host's.
        result = orm_state.invoke_statement(statement=statement)
        try:
            return finish(result)
        except _Fallback as fb:
            self._invalidate(session, [pt.name], fb.cause)
        except Exception as exc:  # noqa: never fail the host's statement
            self._invalidate(session, [pt.name], 'capture_error', exc)
        return result

    # ------------------------------------------------------- text()

    def _text(self, orm_state, stmt):
        try:
            name = text_dml_tables(stmt.text)
            if name is None:
                return None
            found = self.tables.get(name)
            if found is None:
                short = name.rsplit('.', 1)[-1]
                found = self.tables.get(short)
            if found is None:
                return None
            LOG.warning('DML in text() on published table %s cannot be '
                        'captured row by row; invalidating the table',
                        found.name)
            self._invalidate(orm_state.session, [found.name], 'text_dml')
        except Exception:  # noqa: never fail the host's statement
            LOG.exception('Inspecting a text() statement failed')
        return None

    # ------------------------------------------------------- helpers

    def _param_keys(self, orm_state, pt, table, params):
        """Primary keys named by executemany parameter sets, or None."""
        mapper = orm_state.bind_mapper if orm_state.is_orm_statement \
            else None
        names = []
        for col in pt.pk:
            if mapper is not None:
                try:
                    names.append(mapper.get_property_by_column(
                        table.c[col]).key)
                    continue
                except Exception:  # noqa: fall back to the column name
                    pass
            names.append(col)
        keys = []
        for p in params:
            try:
                keys.append(tuple(p[n] for n in names))
            except KeyError:
                return None
        return keys

    @staticmethod
    def _key_columns(orm_state, pt, table):
        """Primary-key expressions usable in ``orm_state``'s statement.

        ORM statements get the mapped attributes, so that the session's
        ``synchronize_session='evaluate'`` can evaluate the criteria.
        """
        mapper = orm_state.bind_mapper if orm_state.is_orm_statement \
            else None
        out = []
        for col in pt.pk:
            expr = table.c[col]
            if mapper is not None:
                try:
                    expr = mapper.get_property_by_column(
                        expr).class_attribute
                except Exception:  # noqa: unmapped: the plain column
                    pass
            out.append(expr)
        return out

    def _record_inserts(self, orm_state, pt, table, conn, keys):
        rows = rows_mod.read_rows(conn, table, pt, keys)
        events = frames.state(orm_state.session).top
        for key in keys:
            row = rows.get(tuple(key))
            if row is not None:
                events.append((wire.INSERT, pt.name, tuple(key), None, row,
                               None, True))

    # ------------------------------------------------------- INSERT

    def _prepare_insert(self, orm_state, pt, table, conn):
        stmt = orm_state.statement
        if getattr(stmt, '_post_values_clause', None) is not None:
            raise _Fallback('upsert')
        from_select = getattr(stmt, 'select', None) is not None
        params = orm_state.parameters
        if not from_select and isinstance(params, list) and params:
            keys = self._param_keys(orm_state, pt, table, params)
            if keys is not None:
                def finish(result):
                    self._record_inserts(orm_state, pt, table, conn, keys)
                    return result
                return stmt, finish
        if getattr(stmt, '_returning', ()):
            def finish(result):
                result, keys = self._returned_keys(orm_state, pt, table,
                                                   result)
                self._record_inserts(orm_state, pt, table, conn, keys)
                return result
            return stmt, finish
        if from_select or orm_state.is_orm_statement:
            if not conn.dialect.insert_returning:
                raise _Fallback('insert_from_select' if from_select
                                else 'insert_no_key')
            core = not orm_state.is_orm_statement

            # Ask for the keys of the rows the statement creates.
            def finish(result):
                if core:
                    # The host asked for no rows: consume them, keep
                    # the result (and its rowcount).
                    keys = [tuple(r) for r in result.fetchall()]
                    kept = result
                else:
                    kept, keys = self._returned_keys(orm_state, pt, table,
                                                     result)
                self._record_inserts(orm_state, pt, table, conn, keys)
                return kept
            return stmt.returning(
                *self._key_columns(orm_state, pt, table)), finish

        def finish(result):
            keys = self._result_keys(result)
            if keys is None:
                raise _Fallback('insert_no_key')
            self._record_inserts(orm_state, pt, table, conn, keys)
            return result
        return stmt.return_defaults(), finish

    def _returned_keys(self, orm_state, pt, table, result):
        """Primary keys from RETURNING rows; and a fresh result to return.

        The rows are read here, so the caller gets an equivalent result
        re-served from memory.
        """
        names = list(result.keys())
        wanted = [getattr(c, 'key', None) for c in
                  self._key_columns(orm_state, pt, table)]
        positions = []
        for col, attr in zip(pt.pk, wanted):
            if attr in names:
                positions.append(names.index(attr))
            elif col in names:
                positions.append(names.index(col))
            else:
                # The host's own RETURNING lacks the key: its result is
                # left untouched.
                raise _Fallback('insert_no_key')
        frozen = result.freeze()
        keys = [tuple(row[p] for p in positions) for row in frozen.data]
        return frozen(), keys

    @staticmethod
    def _result_keys(result):
        try:
            rows = result.inserted_primary_key_rows
        except Exception:  # noqa: not a CursorResult or not available
            return None
        if not rows or any(r is None or None in tuple(r) for r in rows):
            return None
        return [tuple(r) for r in rows]

    # ------------------------------------------------------- UPDATE/DELETE

    def _prepare_update_delete(self, orm_state, pt, table, conn):
        stmt = orm_state.statement
        params = orm_state.parameters
        many = isinstance(params, list)
        if stmt.whereclause is None and many and orm_state.is_orm_statement:
            keys = self._param_keys(orm_state, pt, table, params)
            if keys is None:
                raise _Fallback('bulk_update')
            before = rows_mod.read_rows(conn, table, pt, keys, lock=True)
            restricted = stmt
        else:
            sel = sa.select(*[table.c[c] for c in pt.columns])
            if stmt.whereclause is not None:
                sel = sel.where(stmt.whereclause)
            else:
                sel = sel.select_from(table)
            if conn.dialect.name == 'sqlite':
                rows_mod.lock_for_write(conn, table)
            else:
                sel = sel.with_for_update()
            before = {}
            for p in (params if many else [params or {}]):
                for row in conn.execute(sel, p).mappings():
                    row = dict(row)
                    before[tuple(row[c] for c in pt.pk)] = row
            restricted = stmt
            if not many:
                restricted = stmt.where(rows_mod.pk_criteria(
                    self._key_columns(orm_state, pt, table), list(before)))

        def finish(result):
            events = frames.state(orm_state.session).top
            if orm_state.is_delete:
                for key, row in before.items():
                    events.append((wire.DELETE, pt.name, key, row, None,
                                   None, True))
                return result
            after = rows_mod.read_rows(conn, table, pt, before)
            vanished = [k for k in before if k not in after]
            for key, row in before.items():
                new = after.get(key)
                if new is None:
                    continue
                changed = set(c for c in pt.columns
                              if not rows_mod.same(row[c], new[c]))
                if changed:
                    events.append((wire.UPDATE, pt.name, key, row, new,
                                   changed, True))
            if vanished:
                LOG.warning('An UPDATE changed the primary key of %d rows '
                            'of published table %s; invalidating the '
                            'table', len(vanished), pt.name)
                raise _Fallback('pk_update')
            return result
        return restricted, finish
