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


"""Capture: row deltas of allow-listed tables, taken from session events.

A :class:`Capture` listens to the events of ONE target (an oslo.db
enginefacade sessionmaker, a SQLAlchemy ``sessionmaker`` or a ``Session``
subclass); other sessions of the process are not touched.

What is seen, and how:

* ORM flushes (``before_flush`` / ``after_flush``): inserts with their
  after-image, updates with the original values and the after-image,
  deletes with the full before-image. Originals come from the object
  state; only when a dirty or deleted object has unloaded columns is
  its row read before the flush (one query per table).
* Statements executed through the session (``do_orm_execute``): ORM
  bulk ``UPDATE``/``DELETE`` (``Query.update/delete``, oslo.db's
  ``soft_delete`` and ``update_on_match``) and Core
  ``insert()/update()/delete()``. Affected rows are selected (``FOR
  UPDATE`` where the database has it) before the statement, the
  statement is restricted to exactly those rows, and after-images are
  read back by primary key.
* Savepoints: every nested transaction collects its own events; a
  released savepoint hands them to its parent, a rolled-back one drops
  them.

At ``before_commit`` of the outermost transaction the events are
consolidated per row (insert+update -> insert of the final image,
insert+delete -> nothing, update+delete -> delete with the original
before-image, a primary-key change -> delete + insert), missing
after-image columns (server defaults, server-side ``onupdate``) are read
back, every value is encoded (:func:`oslo_publish.wire.encode_value`) and
the result is handed to the sink. A value that cannot be encoded, or a
statement whose effect cannot be captured, makes the commit fail with
:class:`~oslo_publish.exceptions.EncodeError`: a delta is never dropped
silently.

Not seen: SQL executed on a connection outside the session (``text()``
through the session is not parsed either) and the ``bulk_*_mappings``
helpers; the consumer's periodic resync repairs such changes.
"""

import datetime
import itertools
import threading
import uuid
import weakref

from oslo_log import log
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import attributes

from oslo_publish import exceptions
from oslo_publish import wire

LOG = log.getLogger(__name__)

_KEY = 'oslo_publish.capture'
_MISSING = object()
_CHUNK = 500
#: target -> the Capture listening to it (one per target).
_ATTACHED = weakref.WeakKeyDictionary()
_ATTACHED_LOCK = threading.Lock()


class _Plan(object):
    """How one mapper's object state maps onto one published table."""

    __slots__ = ('pt', 'name', 'cols', 'pk', 'implicit_null', 'ident')

    def __init__(self, pt, mapper, table):
        self.pt = pt
        self.name = pt.name
        cols = []
        for name in pt.columns:
            try:
                prop = mapper.get_property_by_column(table.c[name])
                cols.append((name, prop.key))
            except Exception:  # noqa: unmapped column: read it back
                cols.append((name, None))
        self.cols = tuple(cols)
        self.pk = pt.pk
        self.implicit_null = frozenset(
            c.name for c in table.columns if c.name in pt.columns
            and c.default is None and c.server_default is None
            and c.server_onupdate is None and c.onupdate is None
            and not c.primary_key and c.computed is None
            and c.identity is None)
        ident = {}
        for pos, col in enumerate(mapper.primary_key):
            if col.name in pt.pk:
                ident[col.name] = pos
        self.ident = ident

    def original(self, state):
        """Original values as known; and the names not known."""
        d, cs = state.dict, state.committed_state
        out, missing = {}, []
        for col, key in self.cols:
            if key is None:
                missing.append(col)
                continue
            value = cs[key] if key in cs else d.get(key, _MISSING)
            if value is _MISSING or value is attributes.NO_VALUE or \
                    value is attributes.NEVER_SET:
                missing.append(col)
            else:
                out[col] = value
        return out, missing

    def current(self, state, inserted=False):
        """Current values as known (implicit NULLs filled for inserts)."""
        d = state.dict
        out = {}
        for col, key in self.cols:
            value = d.get(key, _MISSING) if key is not None else _MISSING
            if value is _MISSING:
                if inserted and col in self.implicit_null:
                    out[col] = None
                continue
            out[col] = value
        return out

    def key_of(self, image, state=None):
        """The primary-key tuple from ``image``, else the identity."""
        key = []
        for col in self.pk:
            value = image.get(col, _MISSING)
            if value is _MISSING and state is not None and \
                    state.key is not None and col in self.ident:
                value = state.key[1][self.ident[col]]
            if value is _MISSING:
                return None
            key.append(value)
        return tuple(key)


class _Row(object):
    """Net effect of one transaction on one row (consolidation)."""

    __slots__ = ('existed', 'orig', 'exists', 'after', 'changed', 'exact')

    def __init__(self, existed, before):
        self.existed = existed
        self.orig = dict(before or {})
        self.exists = existed
        self.after = None
        self.changed = set()
        self.exact = True

    def merge_before(self, before):
        """Keep the earliest known original value of every column."""
        if before and self.existed:
            orig = self.orig
            for col, value in before.items():
                if col not in orig:
                    orig[col] = value


class _Frame(object):
    """Events of one (nested) transaction."""

    __slots__ = ('tx', 'events', 'released')

    def __init__(self, tx):
        self.tx = tx
        self.events = []
        self.released = False


class _TxState(object):
    """Capture state of one session's outermost transaction."""

    __slots__ = ('frames', 'pre', 'staged', 'sealed', 'committed')

    def __init__(self):
        self.frames = [_Frame(None)]
        self.pre = None
        self.staged = False
        self.sealed = False
        self.committed = False

    @property
    def top(self):
        return self.frames[-1].events


def _state(session):
    st = session.info.get(_KEY)
    if st is None:
        st = session.info[_KEY] = _TxState()
    return st


def pk_criteria(columns, keys):
    """A WHERE criterion matching exactly the primary keys ``keys``.

    :param columns: the primary-key column expressions, in key order.
    """
    if len(columns) == 1:
        return columns[0].in_([k[0] for k in keys])
    if not keys:
        return columns[0].in_([])
    return sa.or_(*[sa.and_(*[c == v for c, v in zip(columns, key)])
                    for key in keys])


_SELECTS = {}


def _select_by_key(table, pt):
    """A cached SELECT of ``pt``'s columns by a list of primary keys."""
    cache_key = (table, pt.columns, pt.pk)
    sel = _SELECTS.get(cache_key)
    if sel is None:
        sel = sa.select(*[table.c[c] for c in pt.columns])
        if len(pt.pk) == 1:
            sel = sel.where(table.c[pt.pk[0]].in_(
                sa.bindparam('keys', expanding=True)))
        else:
            sel = sel.where(sa.tuple_(*[table.c[c] for c in pt.pk]).in_(
                sa.bindparam('keys', expanding=True)))
        _SELECTS[cache_key] = sel
    return sel


def read_rows(conn, table, pt, keys):
    """Read the published columns of the rows ``keys`` -> {key: row}."""
    out = {}
    keys = list(keys)
    sel = _select_by_key(table, pt)
    single = len(pt.pk) == 1
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start:start + _CHUNK]
        params = [k[0] for k in chunk] if single else chunk
        for row in conn.execute(sel, {'keys': params}).mappings():
            row = dict(row)
            out[tuple(row[c] for c in pt.pk)] = row
    return out


def _same(a, b):
    try:
        return bool(a == b)
    except Exception:  # noqa: values that cannot be compared differ
        return False


class Capture(object):
    """Session event listeners capturing deltas of published tables.

    :param tables: ``{name: PublishedTable}``.
    :param sink: the delivery sink (``stage``, ``committed``,
        ``discarded``).
    :param stream: the stream name (metric label).
    :param metrics: a :class:`~oslo_publish.metrics.HostMetrics` or None.
    """

    _EVENTS = ('before_flush', 'after_flush', 'do_orm_execute',
               'after_transaction_create', 'after_transaction_end',
               'before_commit', 'after_commit')

    def __init__(self, tables, sink, stream=None, metrics=None,
                 reread_updates=True):
        self.tables = tables
        self.sink = sink
        self.stream = stream or ''
        self.metrics = metrics
        self.reread_updates = reread_updates
        self._plans_cache = {}
        self._targets = []

    # ------------------------------------------------------- attach

    def attach(self, target):
        """Listen to ``target`` (a sessionmaker or Session subclass).

        :raises UnsupportedTarget: another capture listens to it already
            (each transaction would be published twice).
        """
        with _ATTACHED_LOCK:
            if _ATTACHED.get(target) is not None:
                raise exceptions.UnsupportedTarget(
                    'oslo.publish is already installed on %r; stop that '
                    'handle first' % (target,))
            _ATTACHED[target] = self
        for name in self._EVENTS:
            event.listen(target, name, getattr(self, '_on_' + name))
        self._targets.append(target)

    def detach(self):
        """Remove every listener this capture added."""
        while self._targets:
            target = self._targets.pop()
            for name in self._EVENTS:
                fn = getattr(self, '_on_' + name)
                if event.contains(target, name, fn):
                    event.remove(target, name, fn)
            with _ATTACHED_LOCK:
                if _ATTACHED.get(target) is self:
                    del _ATTACHED[target]

    # ------------------------------------------------------- mapping

    def _plans(self, mapper):
        plans = self._plans_cache.get(mapper)
        if plans is None:
            plans = []
            for table in mapper.tables:
                pt = self.tables.get(getattr(table, 'fullname', None))
                if pt is not None:
                    plans.append(_Plan(pt, mapper, table))
            plans = self._plans_cache[mapper] = tuple(plans)
        return plans

    def _published(self, table):
        name = getattr(table, 'fullname', None)
        return self.tables.get(name) if name else None

    # ------------------------------------------------------- transactions

    def _on_after_transaction_create(self, session, transaction):
        if transaction.nested:
            _state(session).frames.append(_Frame(transaction))

    def _on_after_transaction_end(self, session, transaction):
        st = session.info.get(_KEY)
        if st is None:
            return
        if transaction.nested:
            for pos in range(len(st.frames) - 1, 0, -1):
                frame = st.frames[pos]
                if frame.tx is transaction:
                    del st.frames[pos:]
                    if frame.released:
                        st.frames[pos - 1].events.extend(frame.events)
                    break
        elif transaction.parent is None:
            del session.info[_KEY]
            if st.staged and not st.committed:
                self.sink.discarded(session)

    def _on_after_commit(self, session):
        st = session.info.get(_KEY)
        if st is None:
            return
        nested = session.get_nested_transaction()
        if nested is not None:
            for frame in st.frames:
                if frame.tx is nested:
                    frame.released = True
            return
        if st.staged:
            st.committed = True
            self.sink.committed(session)

    def _on_before_commit(self, session):
        if session.get_nested_transaction() is not None:
            return
        session.flush()
        st = session.info.get(_KEY)
        if st is None or st.sealed:
            return
        self._stage(session, st)
        st.sealed = True

    def _stage(self, session, st):
        """Hand the pending events of ``session`` to the sink.

        The events are kept until the sink took them, so a commit that
        failed here (e.g. EncodeError) can be fixed and retried.
        """
        events = list(itertools.chain.from_iterable(
            f.events for f in st.frames))
        if not events:
            return
        changes, tables = self._consolidate(session, events)
        if changes:
            committed_at = datetime.datetime.now(datetime.timezone.utc)
            self.sink.stage(session, uuid.uuid4().hex, committed_at,
                            changes, tables)
            st.staged = True
            if self.metrics is not None:
                self.metrics.transactions_captured.labels(self.stream).inc()
                self.metrics.deltas_captured.labels(self.stream).inc(
                    len(changes))
        for frame in st.frames:
            frame.events = []

    # ------------------------------------------------------- ORM flush

    def _on_before_flush(self, session, flush_context, instances):
        pre = None
        to_load = {}
        for obj in itertools.chain(session.dirty, session.deleted):
            state = attributes.instance_state(obj)
            if state.key is None:
                continue
            for plan in self._plans(state.mapper):
                orig, missing = plan.original(state)
                if pre is None:
                    pre = {}
                pre[(state, plan.name)] = orig
                if missing:
                    to_load.setdefault(plan, []).append((state, orig))
        if to_load:
            self._preload(session, to_load)
        st = session.info.get(_KEY)
        if pre is not None or (st is not None and st.pre is not None):
            _state(session).pre = pre

    def _preload(self, session, to_load):
        conn = session.connection()
        for plan, items in to_load.items():
            keyed = {}
            for state, orig in items:
                key = plan.key_of(orig, state)
                if key is not None:
                    keyed.setdefault(key, []).append(orig)
            rows = read_rows(conn, plan.pt.table, plan.pt, keyed)
            for key, origs in keyed.items():
                row = rows.get(key)
                if row is None:
                    continue
                for orig in origs:
                    for col, value in row.items():
                        orig.setdefault(col, value)

    def _on_after_flush(self, session, flush_context):
        st = session.info.get(_KEY)
        pre = None
        if st is not None:
            pre, st.pre = st.pre, None
        pre = pre or {}
        events = None
        for state, (isdelete, listonly) in flush_context.states.items():
            plans = self._plans(state.mapper)
            if not plans:
                continue
            if events is None:
                events = _state(session).top
            for plan in plans:
                self._flushed(plan, state, isdelete, listonly, pre, events)
        if events and st is not None and st.sealed:
            # A flush after our before_commit (another before_commit
            # listener changed objects): stage its deltas as well.
            self._stage(session, st)

    def _flushed(self, plan, state, isdelete, listonly, pre, events):
        name = plan.name
        if isdelete:
            if state.key is None:
                return
            orig = pre.get((state, name))
            if orig is None:
                orig = plan.original(state)[0]
            events.append((wire.DELETE, name, plan.key_of(orig, state),
                           orig, None, None, True))
        elif state.key is None:
            after = plan.current(state, inserted=True)
            events.append((wire.INSERT, name, plan.key_of(after), None,
                           after, None, True))
        elif not listonly:
            orig = pre.get((state, name))
            if orig is None:
                orig = plan.original(state)[0]
            after = plan.current(state)
            changed = set(c for c, v in after.items()
                          if c in orig and not _same(orig[c], v))
            if not changed:
                return
            # Expired by the flush: server-side onupdate values.
            changed.update(c for c in orig if c not in after)
            old_key = plan.key_of(orig, state)
            new_key = plan.key_of(after, state)
            if old_key != new_key:
                events.append((wire.DELETE, name, old_key, orig, None, None,
                               True))
                events.append((wire.INSERT, name, new_key, None, after,
                               None, False))
            else:
                # Not exact: columns this flush did not write may have
                # been changed by a concurrent transaction since they were
                # loaded; the after-image is read back under the row lock.
                events.append((wire.UPDATE, name, new_key, orig, after,
                               changed, not self.reread_updates))

    # ------------------------------------------------------- statements

    def _on_do_orm_execute(self, orm_state):
        if orm_state.is_select:
            return None
        is_insert = orm_state.is_insert
        if not (is_insert or orm_state.is_update or orm_state.is_delete):
            return None
        stmt = orm_state.statement
        table = getattr(stmt, 'table', None)
        pt = self._published(table)
        if pt is None:
            return None
        session = orm_state.session
        if orm_state.is_orm_statement and session.autoflush and \
                orm_state.execution_options.get('autoflush', True):
            session.flush()
        conn = session.connection(
            bind_arguments=orm_state.bind_arguments or None)
        if is_insert:
            return self._execute_insert(orm_state, pt, table, conn)
        return self._execute_update_delete(orm_state, pt, table, conn)

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

    def _execute_insert(self, orm_state, pt, table, conn):
        stmt = orm_state.statement
        if getattr(stmt, 'select', None) is not None or \
                getattr(stmt, '_post_values_clause', None) is not None:
            raise exceptions.EncodeError(
                'cannot capture INSERT ... SELECT or upsert statements on '
                'published table %s; use the ORM or plain inserts'
                % pt.name)
        params = orm_state.parameters
        keys = None
        if isinstance(params, list) and params:
            keys = self._param_keys(orm_state, pt, table, params)
        if keys is not None:
            result = orm_state.invoke_statement()
        elif getattr(stmt, '_returning', ()):
            result, keys = self._returned_keys(
                orm_state, pt, table, orm_state.invoke_statement())
        elif orm_state.is_orm_statement:
            # The ORM hands no generated keys back: ask for them.
            result, keys = self._returned_keys(
                orm_state, pt, table, orm_state.invoke_statement(
                    statement=stmt.returning(
                        *self._key_columns(orm_state, pt, table))))
        else:
            result = orm_state.invoke_statement(
                statement=stmt.return_defaults())
            keys = self._result_keys(result)
        if keys is None:
            raise exceptions.EncodeError(
                'cannot tell which rows an INSERT into published table %s '
                'created; give the primary-key values' % pt.name)
        rows = read_rows(conn, table, pt, keys)
        events = _state(orm_state.session).top
        for key in keys:
            row = rows.get(tuple(key))
            if row is not None:
                events.append((wire.INSERT, pt.name, tuple(key), None, row,
                               None, True))
        return result

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
                raise exceptions.EncodeError(
                    'an INSERT into published table %s returns rows '
                    'without its primary key %s; add it to RETURNING'
                    % (pt.name, col))
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

    def _execute_update_delete(self, orm_state, pt, table, conn):
        stmt = orm_state.statement
        params = orm_state.parameters
        cols = [table.c[c] for c in pt.columns]
        many = isinstance(params, list)
        if stmt.whereclause is None and many and orm_state.is_orm_statement:
            keys = self._param_keys(orm_state, pt, table, params)
            if keys is None:
                raise exceptions.EncodeError(
                    'cannot capture bulk UPDATE by primary key on %s: '
                    'parameter sets without primary key' % pt.name)
            before = read_rows(conn, table, pt, keys)
            restricted = None
        else:
            sel = sa.select(*cols)
            if stmt.whereclause is not None:
                sel = sel.where(stmt.whereclause)
            else:
                sel = sel.select_from(table)
            if conn.dialect.name != 'sqlite':
                sel = sel.with_for_update()
            before = {}
            for p in (params if many else [params or {}]):
                for row in conn.execute(sel, p).mappings():
                    row = dict(row)
                    before[tuple(row[c] for c in pt.pk)] = row
            restricted = None
            if not many and conn.dialect.name != 'sqlite':
                restricted = stmt.where(pk_criteria(
                    self._key_columns(orm_state, pt, table), list(before)))
        if restricted is not None:
            result = orm_state.invoke_statement(statement=restricted)
        else:
            result = orm_state.invoke_statement()
        events = _state(orm_state.session).top
        if orm_state.is_delete:
            for key, row in before.items():
                events.append((wire.DELETE, pt.name, key, row, None, None,
                               True))
            return result
        after = read_rows(conn, table, pt, before)
        vanished = [k for k in before if k not in after]
        if vanished:
            raise exceptions.EncodeError(
                'an UPDATE statement changed the primary key of rows of '
                'published table %s; change primary keys through the ORM '
                'so the change can be captured' % pt.name)
        for key, row in before.items():
            new = after[key]
            changed = set(c for c in pt.columns if not _same(row[c], new[c]))
            if changed:
                events.append((wire.UPDATE, pt.name, key, row, new, changed,
                               True))
        return result

    # ------------------------------------------------------- commit

    def _consolidate(self, session, events):
        """Net effect per row -> (wire changes, tables header)."""
        rows = {}
        for op, name, key, before, after, changed, exact in events:
            if key is None:
                raise exceptions.EncodeError(
                    'a %s on published table %s has no primary key value'
                    % (op, name))
            entry = rows.get((name, key))
            if entry is None:
                existed = op != wire.INSERT
                entry = rows[(name, key)] = _Row(existed, before)
            else:
                entry.merge_before(before)
            entry.exists = op != wire.DELETE
            entry.after = after
            entry.exact = exact
            if op == wire.UPDATE:
                if entry.changed is not None:
                    entry.changed.update(changed)
            else:
                entry.changed = None
        self._read_back(session, rows)
        changes = []
        used = {}
        for (name, key), row in rows.items():
            change = self._change(self.tables[name], key, row)
            if change is not None:
                change['table'] = name
                changes.append(change)
                used[name] = self.tables[name]
        return changes, {n: pt.header() for n, pt in used.items()}

    def _change(self, pt, key, row):
        if row.exists and row.after is None:
            return None  # vanished outside the session
        if row.existed and not row.exists:
            change = {'op': wire.DELETE,
                      'before': self._encode(pt, key, row.orig)}
        elif not row.existed:
            if not row.exists:
                return None
            change = {'op': wire.INSERT,
                      'after': self._encode(pt, key, row.after)}
        else:
            orig, after = row.orig, row.after
            wanted = pt.columns if row.changed is None else row.changed
            changed = [c for c in pt.columns if c in wanted and c in orig
                       and not _same(orig[c], after[c])]
            if not changed:
                return None
            change = {'op': wire.UPDATE,
                      'after': self._encode(pt, key, after),
                      'before': self._encode(
                          pt, key, {c: orig[c] for c in changed},
                          full=False),
                      'changed': changed}
        change['key'] = [self._value(pt, key, c, v)
                         for c, v in zip(pt.pk, key)]
        return change

    def _read_back(self, session, rows):
        wanted = {}
        for (name, key), row in rows.items():
            if row.exists and row.after is not None and (
                    not row.exact or
                    len(row.after) < len(self.tables[name].columns)):
                wanted.setdefault(name, []).append(key)
        if not wanted:
            return
        conn = session.connection()
        for name, keys in wanted.items():
            pt = self.tables[name]
            got = read_rows(conn, pt.table, pt, keys)
            for key in keys:
                row = rows[(name, key)]
                row.after = got.get(key)
                if row.after is None:
                    LOG.warning('Row %s of table %s vanished before commit',
                                key, name)

    def _value(self, pt, key, column, value):
        try:
            return pt.encode_value(column, value)
        except (wire.WireError, ValueError, TypeError) as exc:
            raise exceptions.EncodeError(
                'cannot encode column %s of table %s, key %r: %s'
                % (column, pt.name, key, exc)) from exc

    def _encode(self, pt, key, image, full=True):
        if full and len(image) < len(pt.columns):
            missing = [c for c in pt.columns if c not in image]
            raise exceptions.EncodeError(
                'cannot capture the full image of row %r of table %s: '
                'columns %s were not loaded (load the object before '
                'deleting it)' % (key, pt.name, ', '.join(missing)))
        return {col: self._value(pt, key, col, image[col])
                for col in pt.columns if col in image}
