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


"""Row plumbing: how mapped objects map onto published tables, key reads.

* :class:`Plan` maps one mapper's object state onto one published table.
* :func:`read_rows` reads the published columns of rows by primary key,
  optionally locking them (``FOR UPDATE``; on SQLite the database write
  lock, see :func:`lock_for_write`).
* :func:`pk_criteria` restricts a statement to a set of primary keys.
"""

import sqlalchemy as sa
from sqlalchemy.orm import attributes

MISSING = object()
_CHUNK = 500
#: Up to this many single-column keys are read with a statement of one
#: parameter per key (:func:`_select_by_key`).
_FIXED = 8
_SELECTS = {}
#: Most statements kept in :data:`_SELECTS` (tables come and go in
#: tests).
_SELECTS_SIZE = 1024


class Plan(object):
    """How one mapper's object state maps onto one published table."""

    __slots__ = ('pt', 'name', 'cols', 'pk', 'implicit_null', 'ident',
                 'pk_attrs')

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
        attrs = dict(cols)
        self.pk_attrs = tuple(attrs.get(c) or c for c in pt.pk)
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
            value = cs[key] if key in cs else d.get(key, MISSING)
            if value is MISSING or value is attributes.NO_VALUE or \
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
            value = d.get(key, MISSING) if key is not None else MISSING
            if value is MISSING:
                if inserted and col in self.implicit_null:
                    out[col] = None
                continue
            out[col] = value
        return out

    def key_of(self, image, state=None):
        """The primary-key tuple from ``image``, else the identity."""
        key = []
        for col in self.pk:
            value = image.get(col, MISSING)
            if value is MISSING and state is not None and \
                    state.key is not None and col in self.ident:
                value = state.key[1][self.ident[col]]
            if value is MISSING:
                return None
            key.append(value)
        return tuple(key)

    def mapping_key(self, mapping):
        """The primary key in a ``bulk_*_mappings`` dict, or None."""
        key = []
        for col, attr in zip(self.pk, self.pk_attrs):
            value = mapping.get(attr, MISSING)
            if value is MISSING:
                value = mapping.get(col, MISSING)
            if value is MISSING or value is None:
                return None
            key.append(value)
        return tuple(key)


class Row(object):
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


def lock_for_write(conn, table):
    """Hold the database write lock on SQLite from now to the commit.

    SQLite has no ``FOR UPDATE``, and pysqlite begins a transaction only
    at the first DML statement: a SELECT before it reads outside any
    write lock, so another writer may change the rows it selected before
    this transaction writes. A DML statement matching no row takes the
    write lock (and makes pysqlite begin the transaction), so everything
    read afterwards stays as read until the commit. No-op elsewhere:
    server databases lock rows with ``FOR UPDATE``.
    """
    if conn.dialect.name == 'sqlite':
        conn.execute(sa.delete(table).where(sa.false()))


def _select_by_key(table, pt, lock, count=None):
    """A cached SELECT of ``pt``'s columns by primary keys.

    :param count: None: the keys are one expanding parameter ``keys``
        (any number, rendered at each execution). A number (single-column
        keys only): ``count`` parameters ``k0`` .. ``k<count - 1>``, a
        statement compiled once and found in the compiled cache at each
        execution (the usual read-back reads one or a few rows).
    """
    cache_key = (table, pt.columns, pt.pk, lock, count)
    sel = _SELECTS.get(cache_key)
    if sel is None:
        sel = sa.select(*[table.c[c] for c in pt.columns])
        if count is not None:
            col = table.c[pt.pk[0]]
            sel = sel.where(col.in_([sa.bindparam('k%d' % n, type_=col.type)
                                     for n in range(count)]))
        elif len(pt.pk) == 1:
            sel = sel.where(table.c[pt.pk[0]].in_(
                sa.bindparam('keys', expanding=True)))
        else:
            sel = sel.where(sa.tuple_(*[table.c[c] for c in pt.pk]).in_(
                sa.bindparam('keys', expanding=True)))
        if lock:
            sel = sel.with_for_update()
        if len(_SELECTS) >= _SELECTS_SIZE:
            _SELECTS.clear()
        _SELECTS[cache_key] = sel
    return sel


def read_rows(conn, table, pt, keys, lock=False):
    """Read the published columns of the rows ``keys`` -> {key: row}.

    :param lock: lock the rows until the commit (``FOR UPDATE``; the
        write lock on SQLite).
    """
    out = {}
    keys = list(keys)
    if not keys:
        return out
    if lock:
        if conn.dialect.name == 'sqlite':
            lock_for_write(conn, table)
            lock = False
    columns, pk = pt.columns, pt.pk
    if len(pk) == 1 and len(keys) <= _FIXED:
        # A few single-column keys (the common read-back): one
        # parameter per key, no expanding parameter to render.
        sel = _select_by_key(table, pt, lock, len(keys))
        batches = [(sel, {'k%d' % n: k[0] for n, k in enumerate(keys)})]
    else:
        sel = _select_by_key(table, pt, lock)
        single = len(pk) == 1
        batches = []
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start:start + _CHUNK]
            batches.append((sel, {'keys': [k[0] for k in chunk]
                                  if single else chunk}))
    for sel, params in batches:
        for values in conn.execute(sel, params):
            row = dict(zip(columns, values))
            out[tuple([row[c] for c in pk])] = row
    return out


def same(a, b):
    """``a == b``; values that cannot be compared differ."""
    try:
        return bool(a == b)
    except Exception:  # noqa: values that cannot be compared differ
        return False
