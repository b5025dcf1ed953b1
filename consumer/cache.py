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

"""The in-memory model: tables of rows keyed by primary key.

Readers call :meth:`Cache.view` and get a :class:`View`: a consistent,
immutable picture of every table, taken in O(1) whatever the size of the
cache (no ``copy.deepcopy``). A view never changes under its reader; a
later batch produces a new view and leaves the old one alone.

How: every table is an ``immutables.Map`` (a persistent hash array
mapped trie) of ``key tuple -> row``, and the tables themselves sit in
another ``immutables.Map``. A row is a read-only ``MappingProxyType`` over
a private dict that is never mutated after it was stored. Writers build
the next version of the maps (sharing all untouched structure with the
current one) and publish it by replacing one attribute, which is atomic.
A view is just a reference to one published version. Column values are
not copied: treat JSON column values (dicts, lists) as read-only too.

Declared secondary indexes (``Cache(indexes={'instances': ['host']})``)
are persistent maps too, ``column -> value -> Map(key -> True)``, built
in the same step as the rows, so a view's indexes always agree with its
rows. Values that cannot be hashed (JSON columns) are not indexed.

Writes are idempotent, so replays are harmless: an insert of a key that
exists, or an update of a key that does not, is an upsert; a delete of a
missing key does nothing; a write that leaves a row exactly as it was
produces no event.
"""

import collections
import functools
import itertools
import operator
import threading
import types

import immutables
from oslo_log import log

from consumer import gc_pause
from oslo_publish import wire

LOG = log.getLogger(__name__)

ADD = 'add'
UPDATE = 'update'
DELETE = 'delete'


class Event(collections.namedtuple('Event', 'table op key before after')):
    """One change of the cache, as change handlers receive it.

    ``op`` is :data:`ADD`, :data:`UPDATE` or :data:`DELETE`; ``before``
    and ``after`` are read-only rows (``None`` for the side that does not
    exist: ``before`` of an add, ``after`` of a delete).
    """

    __slots__ = ()


_EMPTY = immutables.Map()

#: ``Event`` of a 5-tuple, without a Python frame per call.
_new_event = functools.partial(tuple.__new__, Event)


def _freeze(row):
    # A private copy the cache never mutates, behind a read-only proxy.
    return types.MappingProxyType(dict(row))


#: Operations that leave a row (an upsert of the after-image).
_UPSERTS = frozenset((wire.INSERT, wire.UPDATE))
_TABLE = operator.attrgetter('table')
_OP = operator.attrgetter('op')
_AFTER = operator.attrgetter('after')


def _runs(changes, declared):
    """``changes`` in order as ``(table, changes, upserts_only)`` runs.

    ``upserts_only``: every change of the run inserts or updates a row
    of a table without declared indexes and has its after-image, so
    :meth:`_Batch.put_many` can apply the run. The checks are C-level
    ``map`` calls over the whole batch (the usual batch is one run).
    """
    tables = set(map(_TABLE, changes))
    if len(tables) == 1:
        table = changes[0].table
        return [(table, changes, _upserts_only(table, changes, declared))]
    runs = []
    for table, group in itertools.groupby(changes, _TABLE):
        group = list(group)
        runs.append((table, group, _upserts_only(table, group, declared)))
    return runs


def _upserts_only(table, changes, declared):
    return table not in declared and \
        _UPSERTS.issuperset(map(_OP, changes)) and \
        None not in map(_AFTER, changes)


def _hashable(value):
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _sort_rows(keyed_rows):
    # Primary-key order when the keys are comparable, else as found.
    try:
        keyed_rows.sort(key=lambda kr: kr[0])
    except TypeError:
        pass
    return tuple(row for _key, row in keyed_rows)


def _fill_table(table, rows, owned=False, events=True):
    """Rows and ADD events of a table that held nothing (bulk path).

    Keys, frozen rows and events are built by C-level ``map`` calls: an
    initial sync puts every row of the table through here. ``owned``
    row dicts are kept as they are, others are copied first. Without
    ``events`` no event is built (an empty list).
    """
    keys = list(map(tuple, rows.keys()))
    values = rows.values() if owned else map(dict, rows.values())
    frozen = list(map(types.MappingProxyType, values))
    if not events:
        return dict(zip(keys, frozen)), []
    events = list(map(_new_event, zip(
        itertools.repeat(table), itertools.repeat(ADD), keys,
        itertools.repeat(None), frozen)))
    return dict(zip(keys, frozen)), events


def _replace_rows(table, old, rows, freeze=_freeze):
    """Rows and events turning ``old`` (a table's rows) into ``rows``.

    ``freeze`` makes the cache's read-only row of a changed one.
    """
    new_rows = {}
    events = []
    for key, row in rows.items():
        key = tuple(key)
        previous = old.get(key)
        if previous is not None and previous == row:
            new_rows[key] = previous
            continue
        frozen = freeze(row)
        new_rows[key] = frozen
        events.append(Event(table, UPDATE if previous is not None
                            else ADD, key, previous, frozen))
    for key, previous in old.items():
        if key not in new_rows:
            events.append(Event(table, DELETE, key, previous, None))
    return new_rows, events


class View(object):
    """A consistent, immutable picture of the cache.

    Every method reads the version of the maps the view was taken from;
    nothing a writer does later is visible through it.
    """

    __slots__ = ('_tables', '_indexes', 'generation')

    def __init__(self, tables, indexes, generation):
        #: immutables.Map table -> immutables.Map(key tuple -> row).
        #: Never mutated (persistent map).
        self._tables = tables
        #: immutables.Map table -> Map(column -> Map(value -> Map(key ->
        #: True))). Invariant: equals the index recomputed from _tables.
        self._indexes = indexes
        #: Number of writes published before this view (0 for an empty
        #: cache); increases by one with every apply / replace / drop.
        self.generation = generation

    def tables(self):
        """Names of the tables held, sorted."""
        return tuple(sorted(self._tables.keys()))

    def has_table(self, table):
        """True if ``table`` is held (possibly with no rows)."""
        return table in self._tables

    def get(self, table, key, default=None):
        """The row of ``table`` with primary key ``key`` (a tuple)."""
        rows = self._tables.get(table)
        if rows is None:
            return default
        return rows.get(tuple(key), default)

    def rows(self, table):
        """Read-only mapping ``key tuple -> row`` of ``table``.

        An unknown table gives an empty mapping.
        """
        return self._tables.get(table, _EMPTY)

    def count(self, table):
        """Number of rows of ``table`` (0 when unknown)."""
        return len(self._tables.get(table, _EMPTY))

    def index_keys(self, table, column, value):
        """Primary keys of the rows of ``table`` whose ``column`` is ``value``.

        :raises ValueError: when ``table.column`` is not a declared index.
        """
        by_column = self._indexes.get(table)
        if by_column is None or column not in by_column:
            raise ValueError('%s.%s is not a declared index of the cache'
                             % (table, column))
        if not _hashable(value):
            return ()
        return tuple(by_column[column].get(value, _EMPTY).keys())

    def by_index(self, table, column, value):
        """Rows of ``table`` whose ``column`` equals ``value``.

        Returned as a tuple, in primary-key order when the keys are
        comparable.

        :raises ValueError: when ``table.column`` is not a declared index.
        """
        rows = self._tables.get(table, _EMPTY)
        keyed = [(key, rows[key])
                 for key in self.index_keys(table, column, value)]
        return _sort_rows(keyed)


class _Batch(object):
    """The next version of the maps, under construction by one writer.

    Holds ``immutables.Map`` mutations; nothing is visible to readers until
    :meth:`finish` returns the new maps and the cache publishes them.
    """

    def __init__(self, tables, indexes, declared):
        #: MapMutation of the published tables map; private to this batch
        #: (the published map itself is never touched).
        self._tables = tables.mutate()
        #: The published indexes map (read only here; finish() derives
        #: the next one from it).
        self._indexes = indexes
        #: table -> indexed columns, the cache's declaration.
        self._declared = declared
        #: table -> MapMutation of its rows (opened lazily). Invariant:
        #: every row put or removed here is also (un)indexed in _index.
        self._rows = {}
        #: (table, column) -> MapMutation of value -> Map(key -> True).
        self._index = {}
        #: Events of the batch, in the order the changes were applied.
        self.events = []

    def rows(self, table):
        mutation = self._rows.get(table)
        if mutation is None:
            mutation = self._tables.get(table, _EMPTY).mutate()
            self._rows[table] = mutation
        return mutation

    def _column_index(self, table, column):
        mutation = self._index.get((table, column))
        if mutation is None:
            current = self._indexes.get(table, _EMPTY).get(column, _EMPTY)
            mutation = current.mutate()
            self._index[(table, column)] = mutation
        return mutation

    def _unindex(self, table, key, row):
        for column in self._declared.get(table, ()):
            value = row.get(column)
            if not _hashable(value):
                continue
            index = self._column_index(table, column)
            keys = index.get(value)
            if keys is None or key not in keys:
                continue
            keys = keys.delete(key)
            if keys:
                index[value] = keys
            else:
                del index[value]

    def _index_row(self, table, key, row):
        for column in self._declared.get(table, ()):
            value = row.get(column)
            if not _hashable(value):
                continue
            index = self._column_index(table, column)
            index[value] = index.get(value, _EMPTY).set(key, True)

    def put(self, table, key, row, freeze=_freeze):
        rows = self.rows(table)
        old = rows.get(key)
        if old is not None and old == row:
            return
        new = freeze(row)
        if old is not None:
            self._unindex(table, key, old)
        rows[key] = new
        self._index_row(table, key, new)
        self.events.append(Event(table, UPDATE if old is not None else ADD,
                                 key, old, new))

    def put_many(self, table, changes, freeze):
        """Upserts of ``table`` without declared indexes (the hot path).

        What :meth:`put` does per change, in one loop with its lookups
        hoisted: a stream applies every change through here.
        """
        rows = self.rows(table)
        get = rows.get
        append = self.events.append
        for change in changes:
            key = change.key
            if type(key) is not tuple:
                key = tuple(key)
            row = change.after
            old = get(key)
            if old is not None:
                if old == row:
                    continue
                new = freeze(row)
                rows[key] = new
                append(_new_event((table, UPDATE, key, old, new)))
            else:
                new = freeze(row)
                rows[key] = new
                append(_new_event((table, ADD, key, None, new)))

    def remove(self, table, key):
        if table not in self._rows and table not in self._tables:
            return
        rows = self.rows(table)
        old = rows.get(key)
        if old is None:
            return
        del rows[key]
        self._unindex(table, key, old)
        self.events.append(Event(table, DELETE, key, old, None))

    def finish(self):
        """Return ``(tables, indexes)``, the new persistent maps."""
        for table, mutation in self._rows.items():
            self._tables[table] = mutation.finish()
        indexes = self._indexes
        if self._index:
            by_table = {}
            for (table, column), mutation in self._index.items():
                by_table.setdefault(table, {})[column] = mutation.finish()
            indexes = indexes.mutate()
            for table, columns in by_table.items():
                indexes[table] = indexes.get(table, _EMPTY).update(columns)
            indexes = indexes.finish()
        return self._tables.finish(), indexes


class Cache(object):
    """Tables of rows keyed by primary-key tuples, read through views.

    :param indexes: declared secondary indexes, ``{table: [column, ...]}``.

    Thread-safety: any number of readers, one writer at a time (the
    writers serialise on ``_write_lock``). Readers never take a lock.
    """

    def __init__(self, indexes=None):
        #: table -> tuple of indexed column names. Set here, never changed.
        self._declared = {table: tuple(columns)
                          for table, columns in (indexes or {}).items()}
        #: Serialises writers: held from reading the current view until the
        #: next one is published, so no write is lost. Readers never take
        #: it.
        self._write_lock = threading.Lock()
        empty_indexes = immutables.Map(
            {table: immutables.Map({c: _EMPTY for c in columns})
             for table, columns in self._declared.items()})
        #: The published version. Replaced (never mutated) under
        #: _write_lock by a single attribute assignment, which is atomic;
        #: read without a lock by view().
        self._view = View(_EMPTY, empty_indexes, 0)

    @property
    def indexes(self):
        """The declared indexes, ``{table: (column, ...)}``."""
        return dict(self._declared)

    def view(self):
        """The current consistent, immutable view. O(1)."""
        return self._view

    def _publish(self, tables, indexes):
        # Caller holds _write_lock.
        self._view = View(tables, indexes, self._view.generation + 1)

    def apply(self, changes, owned=False):
        """Apply one batch of :class:`oslo_publish.wire.Change` atomically.

        Readers see all of the batch or none of it. Changes apply in
        order; an insert or update is an upsert of the after-image, a
        delete of a missing key is a no-op.

        :param owned: the after-images are the caller's to give away
            (freshly decoded, never mutated afterwards): the cache keeps
            them behind its read-only proxies instead of copying each.
        :returns: list of :class:`Event`, in order.
        :raises ValueError: on an unknown operation (nothing is applied).
        """
        if not changes:
            return []
        freeze = types.MappingProxyType if owned else _freeze
        with self._write_lock:
            current = self._view
            batch = _Batch(current._tables, current._indexes,
                           self._declared)
            for table, run, upserts in _runs(changes, self._declared):
                if upserts:
                    batch.put_many(table, run, freeze)
                    continue
                for change in run:
                    self._apply_one(batch, change, freeze)
            if batch.events:
                self._publish(*batch.finish())
        return batch.events

    @staticmethod
    def _apply_one(batch, change, freeze):
        key = tuple(change.key)
        if change.op in _UPSERTS:
            if change.after is None:
                raise ValueError('%s of %s%r without after-image'
                                 % (change.op, change.table, key))
            batch.put(change.table, key, change.after, freeze)
        elif change.op == wire.DELETE:
            batch.remove(change.table, key)
        else:
            raise ValueError('unknown operation %r' % (change.op,))

    def replace_table(self, table, rows, owned=False, events=True):
        """Swap in a whole new content of ``table`` atomically.

        :param rows: ``{key tuple: row dict}``, the complete table.
        :param owned: the row dicts are the caller's to give away (freshly
            decoded, referenced nowhere else): the cache keeps them as
            they are instead of copying each one.
        :param events: False when nobody takes the events: a table that
            held nothing is then filled without building one per row
            (an empty list is returned).
        :returns: events turning the old content into the new one: adds,
            updates for rows that differ, deletes for rows that vanished.
        """
        freeze = types.MappingProxyType if owned else _freeze
        with self._write_lock:
            current = self._view
            old = current._tables.get(table, _EMPTY)
            with gc_pause.paused():
                if not old:
                    new_rows, events = _fill_table(table, rows, owned,
                                                   events)
                else:
                    new_rows, events = _replace_rows(table, old, rows,
                                                     freeze)
                new_table = immutables.Map(new_rows)
            indexes = current._indexes
            if table in self._declared:
                indexes = indexes.set(table, self._build_indexes(
                    table, new_table))
            self._publish(current._tables.set(table, new_table), indexes)
        LOG.debug('Replaced table %s: %d rows, %d events', table,
                  len(new_rows), len(events))
        return events

    def _build_indexes(self, table, rows):
        columns = {}
        for column in self._declared[table]:
            values = {}
            for key, row in rows.items():
                value = row.get(column)
                if _hashable(value):
                    values.setdefault(value, {})[key] = True
            columns[column] = immutables.Map(
                {value: immutables.Map(keys)
                 for value, keys in values.items()})
        return immutables.Map(columns)

    def drop_table(self, table):
        """Remove ``table``; every row it held is reported as deleted."""
        with self._write_lock:
            current = self._view
            old = current._tables.get(table)
            if old is None:
                return []
            events = [Event(table, DELETE, key, row, None)
                      for key, row in old.items()]
            indexes = current._indexes
            if table in self._declared:
                indexes = indexes.set(table, immutables.Map(
                    {c: _EMPTY for c in self._declared[table]}))
            self._publish(current._tables.delete(table), indexes)
        LOG.debug('Dropped table %s (%d rows)', table, len(events))
        return events
