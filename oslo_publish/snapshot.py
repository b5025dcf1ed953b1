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

"""The snapshot server: consistent, paged table snapshots over RPC.

An oslo.messaging RPC server on the topic
:func:`oslo_publish.wire.snapshot_topic` of the stream (namespace
:data:`~oslo_publish.wire.SNAPSHOT_NAMESPACE`, version
:data:`~oslo_publish.wire.SNAPSHOT_API_VERSION`) with the three
endpoints of the contract in :mod:`oslo_publish.wire`.

``snapshot_open`` runs the watermark protocol (DESIGN.md) through
:meth:`oslo_publish.relay.Relay.lock_for_snapshot`: with the stream lock
held it opens the snapshot transaction S (PostgreSQL: REPEATABLE READ,
read only; MariaDB/MySQL: ``START TRANSACTION WITH CONSISTENT SNAPSHOT``
at REPEATABLE READ; SQLite: a read transaction, which needs the WAL
journal mode), publishes the pending outbox entries S sees and returns
the last of their sequence numbers as the watermark. S stays open
between pages; pages are keyset-paginated by primary key (composite keys
too), at most ``snapshot_page_size`` rows each, so host memory is
bounded by the page size and the number of open snapshots. A client asks
for a page by the key it starts after (API 1.0) or by its number (API
1.1, up to :data:`~oslo_publish.wire.PAGE_WINDOW` requests ahead of the
pages read; :mod:`oslo_publish.snapshot_turns` makes each wait for the
page before it, so the pages are still read one after the other, in key
order, in S).

Limits and refusals (each a :class:`~oslo_publish.exceptions.SnapshotError`
sent back to the caller, logged and counted in
``oslo_publish_snapshots_refused{reason=...}``): when ``signing_key`` is
set, a ``snapshot_open`` without a valid signed ``auth`` object
(:mod:`oslo_publish.snapshot_auth`; ``unauthenticated``,
``bad_signature``, ``malformed``, ``expired``, ``replayed``), checked
before anything is opened; a table that is not
published (``unknown_table``), more than ``max_concurrent_snapshots``
open (``busy``; retry later), more than ``max_snapshots_per_client``
open by the same client (``client_busy``), an unknown or expired snapshot
(``unknown_snapshot``), a bad page request (``bad_request``), a broker
that cannot take the pending deltas (``unavailable``), a request taken
up after the ``deadline`` its consumer sent in ``auth`` (``late``: the
caller stopped waiting, e.g. the request sat in the queue while this
process restarted; a snapshot whose opening ended after the deadline is
closed again at once). A snapshot is closed after its last page, on
``snapshot_close``, after ``snapshot_first_page_timeout`` seconds if
nobody asked a page of it (an answer nobody received) and after
``snapshot_idle_timeout`` seconds without a request; the database ends
it by itself too if this process stops answering (PostgreSQL
``idle_in_transaction_session_timeout``, MySQL/MariaDB ``wait_timeout``
of the snapshot's connection, both ``snapshot_idle_timeout`` + 60 s).

The per-process RPC queues (``<topic>.<server name>`` and the fanout
queue) are deleted when the server stops, so restarts leave no queue
behind on the broker (:mod:`oslo_publish.snapshot_queues`).

Several host processes may serve the same stream: each RPC server has a
name of its own, the snapshot id names its owner, and a page request
that reaches another process is forwarded to the owner.
"""

import collections
from concurrent import futures
import os
import socket
import threading
import time
import uuid

import oslo_messaging
from oslo_log import log
import sqlalchemy as sa

from oslo_publish import exceptions
from oslo_publish import metrics as metrics_mod
from oslo_publish import snapshot_auth
from oslo_publish import snapshot_queues
from oslo_publish import snapshot_turns
from oslo_publish import wire

LOG = log.getLogger(__name__)

_ID_SEP = '@'

#: Seconds a forwarded page request waits for the owning process.
FORWARD_TIMEOUT = 30

#: Seconds the database waits beyond snapshot_idle_timeout before it
#: ends an idle snapshot transaction itself (a hung host process).
DB_IDLE_MARGIN = 60

#: Seconds a request's ``deadline`` may have passed (clock skew between
#: the consumer and the host) before the request is refused as late.
DEADLINE_GRACE = 1.0

#: Fully read snapshots remembered (so that numbered page requests
#: still in flight get an empty last page instead of a refusal).
FINISHED_KEPT = 256


def server_name():
    """A name unique to this process: ``<host>.<pid>.<random>``."""
    return '%s.%d.%s' % (socket.gethostname(), os.getpid(),
                         uuid.uuid4().hex[:6])


def ensure_rpc_opts(conf):
    """Register oslo.messaging's tracing and metrics options if missing.

    oslo.messaging registers them on the global ``cfg.CONF`` only, but its
    RPC client and server read them from the ConfigOpts they were given
    (a private ConfigOpts, as in tests, would fail).
    """
    from oslo_messaging._metrics import client as om_metrics
    from oslo_messaging._tracing import client as om_tracing
    for group, opts in (('oslo_messaging_tracing',
                         om_tracing.oslo_messaging_tracing),
                        ('oslo_messaging_metrics',
                         om_metrics.oslo_messaging_metrics)):
        if group not in conf:
            conf.register_opts(opts, group=group)


def _after_clause(columns, key):
    """Keyset condition ``(c1, c2, ...) > (k1, k2, ...)``, index friendly."""
    terms = []
    for i, column in enumerate(columns):
        parts = [columns[j] == key[j] for j in range(i)]
        parts.append(column > key[i])
        terms.append(sa.and_(*parts))
    return sa.or_(*terms)


def encode_columns(published, rows):
    """The encoded values of ``rows``, column by column.

    ``rows``: tuples in ``published.columns`` order. Each column is
    encoded with :meth:`ColumnCodec.encode_many
    <oslo_publish.codec.ColumnCodec.encode_many>` (values that are their
    own encoding pass at C speed). Returns one list per column ([] for
    no rows).
    """
    if not rows:
        return []
    codecs = published.codecs
    return [codecs[name].encode_many(values)
            for name, values in zip(published.columns, zip(*rows))]


def page_rows(names, columns, layout=None):
    """The ``rows`` of a page of encoded ``columns`` in ``layout``.

    Row objects (``{name: value}``, the same as ``published.encode_row``
    of each row) by default; with :data:`~oslo_publish.wire.LAYOUT_COLUMNS`
    one list of values per row, in the order of ``names``.
    """
    if not columns:
        return []
    if layout == wire.LAYOUT_COLUMNS:
        return list(map(list, zip(*columns)))
    return [dict(zip(names, values)) for values in zip(*columns)]


def _discard(conn):
    try:
        conn.invalidate()
    except Exception as exc:  # noqa: broad - already gone
        LOG.debug('Dropping a snapshot connection: %s', exc)


class _Session(object):
    """One open snapshot: transaction S on ``conn`` and its tables.

    ``lock`` serialises page reads and closing; ``touched`` (monotonic)
    is the time of the last request.
    """

    def __init__(self, snapshot_id, conn, tables, sqlite, client=None,
                 discard=False, published=None):
        self.id = snapshot_id
        self.discard = discard
        self.client = client
        self.conn = conn
        self.tables = tables
        #: ``{name: PublishedTable}`` as announced when S opened.
        self.published = published or {}
        self.remaining = set(tables)
        self.sqlite = sqlite
        self.lock = threading.Lock()
        self.touched = time.monotonic()
        #: False until the first page request: a snapshot nobody asked a
        #: page of within ``snapshot_first_page_timeout`` is an orphan.
        self.asked = False
        self.closed = False
        #: (table, encoded key, Future) of the page read ahead; under
        #: ``_ahead_lock`` (not ``lock``: the read itself holds that).
        self._ahead = None
        self._ahead_lock = threading.Lock()
        #: Numbered pages (API 1.1): which key each page starts after.
        self.turns = snapshot_turns.PageTurns(tables, wire.PAGE_WINDOW)

    def set_ahead(self, table, after, future):
        with self._ahead_lock:
            self._ahead = (table, after, future)

    def take_ahead(self, table, after):
        """The read-ahead Future of page ``(table, after)``, or None."""
        with self._ahead_lock:
            ahead, self._ahead = self._ahead, None
        if ahead is None or ahead[0] != table or ahead[1] != after:
            return None
        return ahead[2]

    def close(self):
        if self.closed:
            return
        self.closed = True
        self.turns.close()
        try:
            if self.sqlite:
                self.conn.exec_driver_sql('ROLLBACK')
            else:
                self.conn.rollback()
        except Exception as exc:  # noqa: broad - the connection may be gone
            LOG.debug('Ending snapshot %s: %s', self.id, exc)
        finally:
            # MySQL: the connection carries the snapshot's session
            # wait_timeout, it is not given back to the pool.
            if self.discard:
                _discard(self.conn)
            self.conn.close()


class _Endpoint(object):
    """The RPC endpoints; see :mod:`oslo_publish.wire`."""

    target = oslo_messaging.Target(namespace=wire.SNAPSHOT_NAMESPACE,
                                   version=wire.SNAPSHOT_API_VERSION)

    def __init__(self, server):
        self._server = server

    @oslo_messaging.expected_exceptions(exceptions.SnapshotError)
    def snapshot_open(self, ctxt, tables=None, auth=None):
        return self._server.open(tables, auth=auth)

    @oslo_messaging.expected_exceptions(exceptions.SnapshotError)
    def snapshot_page(self, ctxt, snapshot_id, table, after=None,
                      index=None, layout=None):
        return self._server.page(ctxt, snapshot_id, table, after, index,
                                 layout)

    @oslo_messaging.expected_exceptions(exceptions.SnapshotError)
    def snapshot_close(self, ctxt, snapshot_id):
        return self._server.close(ctxt, snapshot_id)


class SnapshotServer(object):
    """Serves consistent snapshots of a stream's published tables.

    :param conf: the ConfigOpts (``[oslo_publish]`` snapshot options).
    :param engine: the host database's Engine.
    :param stream: the stream name.
    :param tables: ``{name: PublishedTable}`` (the allow-list).
    :param relay: the stream's :class:`~oslo_publish.relay.Relay`; it
        need not be started (it is used for the watermark only).
    :param transport: an oslo.messaging RPC transport.
    :param metrics: a :class:`~oslo_publish.metrics.HostMetrics`.
    """

    def __init__(self, conf, engine, stream, tables, relay, transport,
                 metrics=None, name=None):
        ensure_rpc_opts(conf)
        self._opts = conf.oslo_publish
        self._engine = engine
        self._stream = stream
        self._tables = tables
        self._relay = relay
        self._transport = transport
        self._metrics = metrics or metrics_mod.HostMetrics()
        self._key = self._opts.signing_key
        self._sqlite = engine.dialect.name == 'sqlite'
        self._mysql = engine.dialect.name in ('mysql', 'mariadb')
        self.name = name or server_name()
        self._sessions = {}
        #: Ids of fully read snapshots, oldest first; under ``_guard``.
        self._finished = collections.OrderedDict()
        self._opening = 0
        #: {client name: snapshots opening now}; under ``_guard``.
        self._opening_by = {}
        #: Nonces of accepted signed requests; under ``_guard``.
        self._nonces = snapshot_auth.NonceCache()
        self._guard = threading.Lock()
        self._stopping = threading.Event()
        #: Reads the next page of each snapshot ahead of its request
        #: (created by start(), shut down by stop()).
        self._ahead_pool = None
        self._rpc = None
        self._reaper = None
        #: Broker queues of this server alone, deleted by stop().
        self._queues = []
        # Forwarded requests carry the version they need (1.0 but for
        # numbered pages), so an owner of an older release answers them.
        self._client = oslo_messaging.get_rpc_client(
            transport, oslo_messaging.Target(
                topic=wire.snapshot_topic(stream),
                namespace=wire.SNAPSHOT_NAMESPACE,
                version=wire.SNAPSHOT_API_BASE_VERSION))

    # ------------------------------------------------------------ server

    def start(self):
        """Start serving (RPC server and the idle-snapshot reaper)."""
        if self._rpc is not None:
            return
        target = oslo_messaging.Target(
            topic=wire.snapshot_topic(self._stream), server=self.name,
            namespace=wire.SNAPSHOT_NAMESPACE,
            version=wire.SNAPSHOT_API_VERSION)
        self._rpc = oslo_messaging.get_rpc_server(
            self._transport, target, [_Endpoint(self)],
            executor='threading',
            access_policy=oslo_messaging.DefaultRPCAccessPolicy)
        self._stopping.clear()
        self._ahead_pool = futures.ThreadPoolExecutor(
            max_workers=max(1, self._opts.max_concurrent_snapshots),
            thread_name_prefix='oslo-publish-snapshot-ahead')
        self._rpc.start()
        topic = wire.snapshot_topic(self._stream)
        own = '%s.%s' % (topic, self.name)
        self._queues = snapshot_queues.private_queues(self._rpc, topic)
        if own not in self._queues and \
                type(getattr(self._transport, '_driver', None)).__name__ \
                == 'RabbitDriver':
            self._queues.append(own)
        self._reaper = threading.Thread(
            target=self._reap, daemon=True,
            name='oslo-publish-snapshot-reaper-%s' % self._stream)
        self._reaper.start()
        LOG.info('Snapshot server %(name)s of stream %(stream)s started',
                 {'name': self.name, 'stream': self._stream})

    def stop(self):
        """Stop serving and close every open snapshot."""
        rpc, self._rpc = self._rpc, None
        self._stopping.set()
        if rpc is not None:
            rpc.stop()
            rpc.wait()
        if self._reaper is not None:
            self._reaper.join()
            self._reaper = None
        if rpc is not None:
            queues, self._queues = self._queues, []
            snapshot_queues.delete_queues(self._transport, queues)
        with self._guard:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            with session.lock:
                session.close()
        pool, self._ahead_pool = self._ahead_pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        LOG.info('Snapshot server of stream %s stopped', self._stream)

    def open_count(self):
        """Number of snapshots open now."""
        with self._guard:
            return len(self._sessions)

    def _timeouts(self):
        """(idle timeout, first-page timeout) in seconds."""
        idle = self._opts.snapshot_idle_timeout
        return idle, min(idle, self._opts.snapshot_first_page_timeout)

    def _expired(self, session, now):
        """Why ``session`` is to be closed now, or None."""
        idle, first = self._timeouts()
        if not session.asked and session.touched < now - first:
            return 'no page asked for within %ss' % first
        if session.touched < now - idle:
            return 'idle for %ss' % idle
        return None

    def _reap(self):
        interval = min(1.0, min(self._timeouts()) / 4.0)
        while not self._stopping.wait(interval):
            now = time.monotonic()
            with self._guard:
                expired = [s for s in self._sessions.values()
                           if self._expired(s, now)]
            for session in expired:
                if not session.lock.acquire(blocking=False):
                    continue
                try:
                    why = self._expired(session, now)
                    if why:
                        if not session.asked:
                            self._metrics.snapshots_orphaned.labels(
                                self._stream).inc()
                        LOG.info('Closing snapshot %(id)s of stream '
                                 '%(stream)s: %(why)s',
                                 {'id': session.id, 'stream': self._stream,
                                  'why': why})
                        self._forget(session)
                finally:
                    session.lock.release()

    def _forget(self, session, finished=False):
        """Close ``session`` (its lock held) and drop it.

        ``finished``: every page was read; numbered page requests still
        in flight for it get an empty last page.
        """
        with self._guard:
            self._sessions.pop(session.id, None)
            if finished:
                self._finished[session.id] = True
                while len(self._finished) > FINISHED_KEPT:
                    self._finished.popitem(last=False)
        session.close()

    def _was_finished(self, snapshot_id):
        with self._guard:
            return snapshot_id in self._finished

    def _refuse(self, reason, text):
        self._metrics.snapshots_refused.labels(self._stream, reason).inc()
        LOG.warning('Snapshot request of stream %(stream)s refused '
                    '(%(reason)s): %(text)s',
                    {'stream': self._stream, 'reason': reason,
                     'text': text})
        raise exceptions.SnapshotError(text)

    # ------------------------------------------------------------- open

    def _authenticate(self, tables, auth):
        """The client name of a request, checked before anything opens."""
        try:
            client = snapshot_auth.check_request(auth, self._key,
                                                 self._stream, tables)
            if self._key:
                with self._guard:
                    self._nonces.check_and_add(auth)
        except snapshot_auth.AuthError as exc:
            self._refuse(exc.reason, 'snapshot request of stream %s not '
                         'authenticated: %s' % (self._stream, exc.detail))
        return client or '-'

    def _reserve(self, client):
        """Count an opening snapshot of ``client``, or refuse it."""
        limit = self._opts.max_concurrent_snapshots
        per_client = self._opts.max_snapshots_per_client
        with self._guard:
            mine = self._opening_by.get(client, 0) + sum(
                1 for s in self._sessions.values() if s.client == client)
            if client != '-' and mine >= per_client:
                reason = 'client_busy'
            elif len(self._sessions) + self._opening >= limit:
                reason = 'busy'
            else:
                reason = None
                self._opening += 1
                self._opening_by[client] = \
                    self._opening_by.get(client, 0) + 1
        if reason == 'client_busy':
            self._refuse(reason, 'client %s already holds %d snapshot(s) '
                         'of stream %s (max_snapshots_per_client=%d); '
                         'retry later' % (client, mine, self._stream,
                                          per_client))
        if reason == 'busy':
            self._refuse('busy', 'too many concurrent snapshots of stream '
                         '%s (max_concurrent_snapshots=%d); retry later'
                         % (self._stream, limit))

    def _release(self, client):
        with self._guard:
            self._opening -= 1
            left = self._opening_by.get(client, 0) - 1
            if left > 0:
                self._opening_by[client] = left
            else:
                self._opening_by.pop(client, None)

    def open(self, tables=None, auth=None):
        """Open a snapshot of ``tables`` (None/empty: all); see wire.

        :param auth: the signed request object of
            :mod:`oslo_publish.snapshot_auth` (required when a signing key
            is set; it is checked before anything else).
        """
        client = self._authenticate(tables, auth)
        self._refuse_late(auth, 'before opening it')
        if tables is not None and not isinstance(tables, (list, tuple)):
            self._refuse('bad_request', 'tables must be a list of names')
        names = list(tables or []) or sorted(self._tables)
        unknown = sorted(str(n) for n in names if n not in self._tables)
        if unknown:
            self._refuse('unknown_table',
                         'table(s) %s not published by stream %s'
                         % (', '.join(unknown), self._stream))
        # Taken before S opens: a log reader re-learns a table (new
        # version) only after it read the DDL, which S then sees too. A
        # version taken after S opened could be newer than S (and than
        # the watermark's deltas): the consumer would never accept them.
        published = {name: self._tables[name] for name in names}
        self._reserve(client)
        try:
            session, watermark = self._open_session(names, client,
                                                    published)
        finally:
            self._release(client)
        if not names or self._late(auth):
            with session.lock:
                # No pages follow: nothing to read, or the caller gave up
                # waiting (its reply would go nowhere).
                self._forget(session)
            self._refuse_late(auth, 'after opening it (closed again)')
        self._metrics.snapshots_served.labels(self._stream).inc()
        LOG.info('Snapshot %(id)s of stream %(stream)s opened at '
                 'watermark %(n)d for %(tables)s',
                 {'id': session.id, 'stream': self._stream, 'n': watermark,
                  'tables': ', '.join(names)})
        return wire.sign({
            'format': wire.FORMAT, 'stream': self._stream,
            'snapshot_id': session.id, 'watermark': watermark,
            'epoch': self._relay.epoch,
            'server': self.name, 'page_window': wire.PAGE_WINDOW,
            'layouts': [wire.LAYOUT_COLUMNS],
            'tables': {name: {'pk': list(published[name].pk),
                              'columns': published[name].column_types(),
                              'version': published[name].version}
                       for name in names}}, self._key)

    @staticmethod
    def _late(auth):
        late = snapshot_auth.seconds_late(auth)
        return late if late is not None and late > DEADLINE_GRACE else None

    def _refuse_late(self, auth, when):
        """Refuse a request whose caller stopped waiting for the answer.

        The request sat in the broker queue (e.g. while this process
        restarted) or waited for the stream lock past the deadline the
        consumer sent: a snapshot opened now would hold a transaction
        nobody reads.
        """
        late = self._late(auth)
        if late is not None:
            self._refuse('late', 'snapshot request of stream %s taken up '
                         '%s, %.1fs after its caller stopped waiting'
                         % (self._stream, when, late))

    def _open_session(self, names, client=None, published=None):
        if self._sqlite:
            self._check_wal()
        conn = self._engine.connect()
        try:
            with self._relay.lock_for_snapshot() as mark:
                self._begin(conn)
                watermark = mark.publish_visible(conn)
        except exceptions.DeliveryError as exc:
            self._abort(conn)
            self._refuse('unavailable', 'cannot publish the pending deltas '
                         'of stream %s (%s); retry later'
                         % (self._stream, exc))
        except BaseException:
            self._abort(conn)
            raise
        session = _Session('%s%s%s' % (uuid.uuid4().hex, _ID_SEP, self.name),
                           conn, names, self._sqlite, client,
                           discard=self._mysql, published=published)
        with self._guard:
            self._sessions[session.id] = session
        return session, watermark

    def _abort(self, conn):
        try:
            if self._sqlite and conn.connection.dbapi_connection \
                    .in_transaction:
                conn.exec_driver_sql('ROLLBACK')
        finally:
            if self._mysql:
                _discard(conn)
            conn.close()

    def _check_wal(self):
        with self._engine.connect() as conn:
            mode = conn.exec_driver_sql('PRAGMA journal_mode').scalar()
        if str(mode).lower() != 'wal':
            self._refuse('unsupported', 'SQLite snapshots need the WAL '
                         'journal mode (PRAGMA journal_mode=WAL), the '
                         'database uses %s' % mode)

    def _begin(self, conn):
        """Open S on ``conn`` and make it take its snapshot now."""
        dialect = self._engine.dialect.name
        idle = int(self._opts.snapshot_idle_timeout) + DB_IDLE_MARGIN
        if dialect == 'sqlite':
            conn.execution_options(isolation_level='AUTOCOMMIT')
            conn.exec_driver_sql('BEGIN')
            conn.exec_driver_sql('SELECT COUNT(*) FROM sqlite_master')
        elif dialect in ('mysql', 'mariadb'):
            conn.execution_options(isolation_level='REPEATABLE READ')
            # The server closes the connection (rolling S back) after
            # this many idle seconds; the connection is never pooled again.
            conn.exec_driver_sql('SET SESSION wait_timeout = %d' % idle)
            conn.exec_driver_sql('START TRANSACTION WITH CONSISTENT SNAPSHOT')
        else:
            conn.execution_options(isolation_level='REPEATABLE READ',
                                   postgresql_readonly=True)
            # The server ends the session if S stays idle this long.
            conn.exec_driver_sql(
                "SET LOCAL idle_in_transaction_session_timeout = '%ds'"
                % idle)
            conn.exec_driver_sql('SELECT 1')  # takes S's snapshot now

    # ------------------------------------------------------------- pages

    def _forward(self, ctxt, snapshot_id, method, **kwargs):
        """Send a request for another process's snapshot to its owner."""
        owner = snapshot_id.partition(_ID_SEP)[2] \
            if isinstance(snapshot_id, str) else ''
        if not owner or owner == self.name:
            self._refuse('unknown_snapshot', 'snapshot %r of stream %s is '
                         'unknown or expired' % (snapshot_id, self._stream))
        version = wire.SNAPSHOT_API_BASE_VERSION
        if kwargs.get('index') is not None:
            version = wire.SNAPSHOT_API_NUMBERED_VERSION
        else:
            kwargs.pop('index', None)
        if kwargs.get('layout') is not None:
            version = wire.SNAPSHOT_API_COLUMNS_VERSION
        else:
            kwargs.pop('layout', None)
        try:
            return self._client.prepare(
                server=owner, timeout=FORWARD_TIMEOUT,
                version=version).call(
                    ctxt or {}, method, snapshot_id=snapshot_id, **kwargs)
        except oslo_messaging.MessagingTimeout:
            self._refuse('unknown_snapshot', 'the owner of snapshot %r of '
                         'stream %s does not answer' % (snapshot_id,
                                                        self._stream))
        except exceptions.SnapshotError:
            raise
        except oslo_messaging.RemoteError as exc:
            raise exceptions.SnapshotError(exc.value) from None

    def _session(self, snapshot_id):
        with self._guard:
            return self._sessions.get(snapshot_id)

    def _reply(self, snapshot_id, table, columns, following, layout=None,
               published=None):
        """A signed page answer of encoded ``columns`` in ``layout``."""
        if published is None and isinstance(table, str):
            published = self._tables.get(table)
        names = published.columns if published is not None else []
        page = {'format': wire.FORMAT, 'stream': self._stream,
                'snapshot_id': snapshot_id, 'table': table,
                'rows': page_rows(names, columns, layout),
                'next': following}
        if layout is not None:
            page['layout'] = layout
            page['columns'] = list(names)
        return wire.sign(page, self._key)

    def page(self, ctxt, snapshot_id, table, after=None, index=None,
             layout=None):
        """One page of ``table`` after key ``after``; see wire.

        ``index`` (instead of ``after``): the page's number, counted from
        0 in the table; see :data:`oslo_publish.wire.PAGE_WINDOW`.
        ``layout``: None (row objects) or
        :data:`~oslo_publish.wire.LAYOUT_COLUMNS` (API 1.2).
        """
        if index is not None and (type(index) is not int or
                                  after is not None):
            self._refuse('bad_request', 'a page has an integer index or '
                         'a key to start after, not both')
        if layout is not None and layout != wire.LAYOUT_COLUMNS:
            self._refuse('bad_request', 'unknown page layout %r'
                         % (layout,))
        session = self._session(snapshot_id)
        if session is not None:
            session.asked = True
        if session is None:
            if index is not None and self._was_finished(snapshot_id):
                return self._reply(snapshot_id, table, [], None, layout)
            return self._forward(ctxt, snapshot_id, 'snapshot_page',
                                 table=table, after=after, index=index,
                                 layout=layout)
        if table not in session.tables:
            self._refuse('unknown_table', 'table %r is not part of '
                         'snapshot %s' % (table, snapshot_id))
        published = session.published.get(table) or self._tables[table]
        if index is not None:
            start = session.turns.start_of(
                table, index, self._opts.snapshot_idle_timeout)
            if start is None:
                self._refuse('bad_request', 'page %r of %s in snapshot %s '
                             'is not next in line (or the snapshot closed)'
                             % (index, table, snapshot_id))
            if not start[0]:
                return self._reply(snapshot_id, table, [], None, layout)
            after = start[1]
        key = None
        if after is not None:
            try:
                key = wire.decode_key(after)
            except wire.WireError as exc:
                self._refuse('bad_request', 'bad page key: %s' % exc)
            if len(key) != len(published.pk):
                self._refuse('bad_request', 'page key has %d parts, the '
                             'primary key of %s %d'
                             % (len(key), table, len(published.pk)))
        ahead = session.take_ahead(table, after)
        read = ahead.result() if ahead is not None else None
        with session.lock:
            if session.closed:
                self._refuse('unknown_snapshot', 'snapshot %s is closed'
                             % snapshot_id)
            session.touched = time.monotonic()
            if read is None:
                read = self._read_page(session, published, key)
            columns, following = read
            if following is None:
                if index is not None:
                    session.turns.advance(table, index, None)
                session.remaining.discard(table)
                if not session.remaining:
                    LOG.debug('Snapshot %s fully read', snapshot_id)
                    self._forget(session, finished=True)
            else:
                self._read_ahead(session, table, published, following)
                # The next numbered request goes on once its page is
                # being read ahead (it takes that read).
                if index is not None:
                    session.turns.advance(table, index, following)
            session.touched = time.monotonic()
        return self._reply(snapshot_id, table, columns, following, layout,
                           published)

    def _read_ahead(self, session, table, published, following):
        """Read the page after ``following`` while this one travels.

        Called with ``session.lock`` held; the read takes the lock once
        the current request released it. At most one page per snapshot is
        read ahead, so host memory stays bounded by the page size.
        """
        def read():
            with session.lock:
                if session.closed:
                    return None
                return self._read_page(session, published,
                                       wire.decode_key(following))
        pool = self._ahead_pool
        if pool is None:
            return
        try:
            future = pool.submit(read)
        except RuntimeError:  # stopping: no read-ahead
            return
        session.set_ahead(table, following, future)

    def _read_page(self, session, published, key):
        size = self._opts.snapshot_page_size
        table = published.table
        pk = [table.c[c] for c in published.pk]
        query = (sa.select(*[table.c[c] for c in published.columns])
                 .order_by(*pk).limit(size + 1))
        if key is not None:
            query = query.where(_after_clause(pk, key))
        result = session.conn.execute(query)
        rows = result.fetchmany(size + 1)
        result.close()
        following = None
        if len(rows) > size:
            rows = rows[:size]
            last = rows[-1]._mapping
            following = published.encode_key([last[c] for c in published.pk])
        return encode_columns(published, rows), following

    def close(self, ctxt, snapshot_id):
        """Close a snapshot (idempotent)."""
        session = self._session(snapshot_id)
        if session is None:
            owner = snapshot_id.partition(_ID_SEP)[2] \
                if isinstance(snapshot_id, str) else ''
            if owner and owner != self.name:
                try:
                    return self._forward(ctxt, snapshot_id,
                                         'snapshot_close')
                except exceptions.SnapshotError:
                    pass
            return {'closed': True}
        with session.lock:
            self._forget(session)
        return {'closed': True}
