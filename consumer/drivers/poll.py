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

"""The ``poll`` driver: for sources that cannot publish.

The Vitrage synchronizer idea. Every ``[consumer_poll] interval`` seconds
the driver calls its source's :meth:`PollSource.get_all`, compares every
entity with a baseline of per-entity hashes and turns only what was
added, changed or vanished into row deltas. The deltas carry a local
sequence number and go through the same reconciler, cache and state store
as published streams (stream ``[consumer_poll] stream``, collector
``poll``, fetcher = the source's name), so restarts resume, handlers see
add/update/delete, and resyncs work the same way. Each poll also feeds a
heartbeat, so keep ``[consumer] inactivity_timeout`` above the interval.

Sources are plugins in the ``consumer.poll_sources`` namespace
(``[consumer_poll] source``). :class:`SQLSource` (``sql``) reads
``[consumer_poll] tables`` of the database ``[consumer_poll] connection``
with keyset pagination by primary key.
"""

import collections
import datetime
import threading

from oslo_log import log
import sqlalchemy as sa
from stevedore import driver as stevedore_driver

from consumer.drivers import base
from consumer import exceptions
from consumer import reconciler as reconciler_mod
from consumer import source as source_mod
from consumer import verify
from oslo_publish import wire

LOG = log.getLogger(__name__)

NAMESPACE = 'consumer.poll_sources'
PAGE_SIZE = 1000


class PolledTable(collections.namedtuple('PolledTable', 'pk version rows')):
    """One table returned by :meth:`PollSource.get_all`.

    ``pk``: tuple of primary-key column names; ``version``: schema
    version text (any stable string); ``rows``: iterable of row dicts.
    """

    __slots__ = ()


class PollSource(object):
    """Base class of poll sources (``consumer.poll_sources`` plugins)."""

    def __init__(self, conf=None):
        self.conf = conf

    def get_all(self):
        """Return ``{table: PolledTable}``: the complete current content."""
        raise NotImplementedError

    def close(self):
        """Release resources."""


class SQLSource(PollSource):
    """Reads ``[consumer_poll] tables`` from ``[consumer_poll] connection``.

    Each table is read in pages of :data:`PAGE_SIZE` rows ordered by
    primary key (keyset pagination), so the database never sorts or
    holds more than one page per query.
    """

    def __init__(self, conf=None, engine=None, tables=None,
                 page_size=PAGE_SIZE):
        super().__init__(conf)
        opts = conf.consumer_poll if conf is not None else None
        if engine is None:
            if not opts.connection:
                raise exceptions.ConfigError(
                    'connection', None, 'the sql poll source needs a '
                    'database URL', group='consumer_poll')
            engine = sa.create_engine(opts.connection)
            self._own_engine = True
        else:
            self._own_engine = False
        self._engine = engine
        self._names = list(tables if tables is not None else opts.tables)
        if not self._names:
            raise exceptions.ConfigError('tables', [], 'name the tables to '
                                         'poll', group='consumer_poll')
        self._page_size = page_size
        self._tables = None

    def _reflect(self):
        metadata = sa.MetaData()
        tables = {}
        for name in self._names:
            try:
                table = sa.Table(name, metadata, autoload_with=self._engine)
            except sa.exc.NoSuchTableError:
                raise exceptions.ConfigError(
                    'tables', name, 'no such table',
                    group='consumer_poll') from None
            pk = tuple(c.name for c in table.primary_key.columns)
            if not pk:
                raise exceptions.ConfigError(
                    'tables', name, 'table has no primary key',
                    group='consumer_poll')
            version = wire.schema_version(
                [(c.name, wire.type_text(c.type)) for c in table.columns])
            tables[name] = (table, pk, version)
        return tables

    def _pages(self, table, pk):
        columns = [table.c[name] for name in pk]
        after = None
        while True:
            query = sa.select(table).order_by(*columns).limit(
                self._page_size)
            if after is not None:
                query = query.where(sa.tuple_(*columns) > sa.tuple_(
                    *[sa.literal(v) for v in after]))
            with self._engine.connect() as conn:
                rows = [dict(r._mapping) for r in conn.execute(query)]
            yield from rows
            if len(rows) < self._page_size:
                return
            after = tuple(rows[-1][name] for name in pk)

    def get_all(self):
        if self._tables is None:
            self._tables = self._reflect()
        return {name: PolledTable(pk, version, self._pages(table, pk))
                for name, (table, pk, version) in self._tables.items()}

    def close(self):
        if self._own_engine:
            self._engine.dispose()


class _PollSnapshot(source_mod.Snapshot):

    def __init__(self, watermark, tables, contents):
        self.watermark = watermark
        self.tables = tables
        self._contents = contents

    def rows(self, table):
        return iter(self._contents[table].items())


class _PollSnapshotSource(source_mod.SnapshotSource):
    """Snapshots of a poll driver: one get_all() at the current seq."""

    def __init__(self, driver):
        self._driver = driver

    def open(self, tables=None):
        try:
            return self._driver._snapshot(tables)
        except exceptions.ConsumerError:
            raise
        except Exception as exc:  # noqa: any source failure is retried
            raise exceptions.SnapshotFailed('get_all failed: %s: %s' % (
                type(exc).__name__, str(exc)[:200])) from None


class PollDriver(base.Driver):
    """Polls a :class:`PollSource` and feeds its deltas to a reconciler."""

    name = 'poll'

    def __init__(self, conf, cache, state, dispatcher, metrics,
                 notifications=None, transport=None, source=None):
        super().__init__(conf, cache, state, dispatcher, metrics,
                         notifications, transport)
        opts = conf.consumer_poll
        self.stream = opts.stream
        self._interval = opts.interval
        if source is None:
            manager = stevedore_driver.DriverManager(
                NAMESPACE, opts.source, invoke_on_load=True,
                invoke_kwds={'conf': conf})
            source = manager.driver
            fetcher = opts.source
        else:
            fetcher = type(source).__name__.lower()
        self.source = source
        #: Serialises get_all() + baseline + seq (poll vs snapshot).
        self._lock = threading.Lock()
        #: table -> {key: row hash}; None until synced or resumed.
        self._baseline = None
        #: Last local sequence number handed to the reconciler.
        self._seq = None
        self._stopping = threading.Event()
        self._thread = None
        tables = list(conf.consumer.tables) or None
        self.reconciler = reconciler_mod.Reconciler(
            conf, self.stream, _PollSnapshotSource(self), cache, state,
            dispatcher, metrics, collector=self.name, fetcher=fetcher,
            tables=tables)
        self.reconcilers[self.stream] = self.reconciler

    # -------------------------------------------------------- lifecycle

    def start(self):
        self.reconciler.start()
        self._thread = threading.Thread(target=self._run,
                                        name='poll-%s' % self.stream,
                                        daemon=True)
        self._thread.start()

    def stop(self):
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(30.0)
            self._thread = None
        self.reconciler.stop()
        self.source.close()

    def _run(self):
        while not self._stopping.wait(self._interval):
            try:
                self.poll_once()
            except Exception:  # noqa: a failed poll is retried next time
                LOG.exception('Poll of stream %s failed', self.stream)

    # ------------------------------------------------------------ work

    def _read(self, wanted):
        contents, tables = {}, {}
        for name, polled in self.source.get_all().items():
            if wanted and name not in wanted:
                continue
            pk = tuple(polled.pk)
            rows = {}
            for row in polled.rows:
                row = dict(row)
                rows[tuple(row[c] for c in pk)] = row
            contents[name] = rows
            tables[name] = {'pk': list(pk), 'version': polled.version}
        return tables, contents

    def _snapshot(self, wanted):
        with self._lock:
            tables, contents = self._read(wanted)
            if self._seq is None:
                self._seq = self.reconciler.applied or 0
            self._baseline = {
                name: {key: reconciler_mod.row_hash(row)
                       for key, row in rows.items()}
                for name, rows in contents.items()}
            return _PollSnapshot(self._seq, tables, contents)

    def _resume_baseline(self):
        view = self.cache.view()
        self._seq = self.reconciler.applied
        self._baseline = {
            name: {key: reconciler_mod.row_hash(row)
                   for key, row in view.rows(name).items()}
            for name in view.tables()}

    def poll_once(self):
        """Poll once; return the number of row deltas fed."""
        message = None
        with self._lock:
            if self._baseline is None:
                if not self.reconciler.synced:
                    return 0
                self._resume_baseline()
            tables, contents = self._read(self.conf.consumer.tables)
            changes = self._diff(contents)
            if changes:
                self._seq += 1
                now = datetime.datetime.now(datetime.timezone.utc)
                message = verify.Message(
                    wire.KIND_DELTA, self.stream, None, self._seq,
                    self._seq, tables,
                    (verify.Transaction(self._seq, None, now,
                                        tuple(changes)),))
            heartbeat = verify.Message(wire.KIND_HEARTBEAT, self.stream,
                                       None, self._seq, self._seq, {}, ())
        for item in (message, heartbeat):
            if item is None:
                continue
            try:
                self.reconciler.handle(item)
            except exceptions.Rejected:
                pass  # counted; a resync follows
            except reconciler_mod.StateUnavailable:
                pass  # stays buffered in the reconciler, retried there
        return len(changes)

    def _diff(self, contents):
        """Changes turning the baseline into ``contents``; new baseline."""
        view = self.cache.view()
        changes = []
        baseline = {}
        for table, rows in contents.items():
            old = self._baseline.get(table, {})
            hashes = {}
            for key, row in rows.items():
                digest = reconciler_mod.row_hash(row)
                hashes[key] = digest
                previous = old.get(key)
                if previous == digest:
                    continue
                before = view.get(table, key)
                # A copy: the reconciler's cache keeps the after-images
                # it is given (the source may reuse its row dicts).
                row = dict(row)
                if previous is None:
                    changes.append(wire.Change(table, wire.INSERT, key, row,
                                               None, ()))
                else:
                    before = dict(before) if before is not None else {}
                    changed = tuple(sorted(
                        c for c in row if before.get(c) != row[c]))
                    changes.append(wire.Change(table, wire.UPDATE, key, row,
                                               before, changed))
            for key in old:
                if key not in hashes:
                    before = view.get(table, key)
                    changes.append(wire.Change(
                        table, wire.DELETE, key, None,
                        dict(before) if before is not None else {}, ()))
            baseline[table] = hashes
        for table, old in self._baseline.items():
            if table not in contents:
                baseline[table] = old
        self._baseline = baseline
        return changes
