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

"""The relay: committed outbox entries -> gapless sequence -> the bus.

One relay cycle (:meth:`Relay.run_once`) holds the stream lock
(:class:`StreamLock`) from its first read to its last write:

1. lock the stream (PostgreSQL, MariaDB/MySQL: ``SELECT ... FOR UPDATE``
   of its ``oslo_publish_streams`` row in a READ COMMITTED transaction L;
   SQLite: a process lock plus an ``flock`` on a lock file beside the
   database file), which serialises every relay of the stream in every
   process using the same database;
2. recovery: read the entries that have a ``seq`` but were never marked
   published (``seq IS NOT NULL AND published_at IS NULL``, left by a
   relay that died or whose publish failed), in seq order;
3. if the batch (``batch_size``) has room: give the next pending entries
   (``seq IS NULL``, in id order) the numbers after the highest one
   assigned so far and COMMIT that assignment in a short transaction of
   its own, before anything is published;
4. publish the batch in seq order as delta messages (split at
   ``max_message_bytes``), republished entries with their recorded
   numbers and identical content;
5. only for what the broker confirmed: delete the entries (or stamp
   ``published_at`` when ``outbox_retention`` keeps them) and move
   ``last_seq`` (in L, committed when the lock is released; on SQLite in
   a short ``BEGIN IMMEDIATE`` transaction).

A number, once given to an entry, is durable and is never given to
another entry, so a consumer that applied a message never drops a
different transaction as a duplicate of it. The entries that have a
number but are not marked published are always ``last_seq + 1`` up to
the highest number assigned; ``last_seq`` may therefore lag the highest
assigned number, and the next number to assign is ``max(last_seq,
highest assigned) + 1``. "Pending" (the backlog gauges,
``oslo-publish-status``) means ``published_at IS NULL``: numbered but
unconfirmed entries count as backlog.

Failure policy: a publish that is not confirmed leaves its entries
numbered and unmarked (messages of the same batch confirmed before it are
marked); the relay backs off (capped, jittered, exponential) and tries
again, forever, republishing them first. A relay that dies after the
broker confirmed and before it marked leaves the same state. Nothing is
lost and no number changes meaning: a message may be published twice
with the same numbers and the same content, which consumers ignore.

The relay thread is woken by :meth:`Relay.wake` right after a host
commit and polls every ``relay_poll_interval`` as a backstop. When
nothing was published for ``heartbeat_interval`` it publishes a
heartbeat carrying the stream's ``last_seq``.

:meth:`Relay.lock_for_snapshot` implements the watermark protocol of the
snapshot server (DESIGN.md): with the stream lock held, the caller opens
its snapshot transaction S; :meth:`Watermark.publish_visible` then
republishes the numbered but unmarked entries, publishes exactly the
pending entries visible to S and returns the watermark N, the last
number published. Everything S sees has ``seq <= N``; everything else is
published later with ``seq > N``.
"""

import collections
import contextlib
import datetime
import fcntl
import json
import os
import random
import re
import threading
import time

from oslo_log import log
import sqlalchemy as sa

from oslo_publish import exceptions
from oslo_publish import metrics as metrics_mod
from oslo_publish import outbox
from oslo_publish import wire

LOG = log.getLogger(__name__)

_OUTBOX = outbox.outbox
_STREAMS = outbox.streams

#: First backoff delay in seconds (doubles up to retry_max_backoff).
BACKOFF_START = 0.1

#: Shortest time between two relay cycles started by wake-ups: commits
#: arriving faster are published together (bounds the relay's cost per
#: transaction on a busy host; adds at most this much latency).
COALESCE = 0.05

_process_locks = {}
_process_locks_guard = threading.Lock()


def _process_lock(engine):
    """SQLite: one lock per database file in this process.

    Other databases need none (the row lock serialises threads and
    processes alike): a no-op context manager is returned.
    """
    if engine.dialect.name != 'sqlite':
        return contextlib.nullcontext()
    key = engine.url.render_as_string(hide_password=True)
    with _process_locks_guard:
        return _process_locks.setdefault(key, threading.Lock())


def lock_file_path(engine, stream):
    """SQLite: the file whose ``flock`` serialises the stream's relays.

    ``<database file>.oslo-publish-<stream>.lock`` beside the database
    file; None for an in-memory database (one process only: the process
    lock is enough) and for other databases.
    """
    if engine.dialect.name != 'sqlite':
        return None
    database = engine.url.database or ''
    if database.startswith('file:'):
        if 'mode=memory' in database:
            return None
        database = database[len('file:'):].split('?', 1)[0]
    if database in ('', ':memory:'):
        return None
    safe = re.sub(r'[^A-Za-z0-9_.-]', '_', stream)
    return '%s.oslo-publish-%s.lock' % (os.path.abspath(database), safe)


@contextlib.contextmanager
def _file_lock(path):
    """Hold an exclusive ``flock`` on ``path`` (created when missing)."""
    if path is None:
        yield
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        fd = os.open(path, os.O_RDONLY)  # made by another user: enough
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def utcnow():
    """Naive UTC now, the way the outbox stores timestamps."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def as_utc(value):
    """An outbox timestamp (naive UTC or aware) as an aware UTC datetime."""
    if value.tzinfo is None:
        return value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(datetime.timezone.utc)


def backoff(failures, cap):
    """Capped, jittered exponential delay after ``failures`` failures."""
    ceiling = min(cap, BACKOFF_START * (2 ** min(failures - 1, 30)))
    return random.uniform(ceiling / 2.0, ceiling)  # nosec - not crypto


def next_seq(last_seq, assigned):
    """The first number to assign after ``last_seq``.

    :param assigned: the numbers given to entries not yet marked
        published (in any order; may be empty).
    """
    return max([last_seq or 0] + [seq for seq in assigned
                                  if seq is not None]) + 1


def _header_size(headers, names=None):
    return sum(wire.encoded_size({name: header})
               for name, header in headers.items()
               if names is None or name not in names)


def split_messages(entries, stream, key, limit):
    """Group transactions into messages of at most ``limit`` bytes.

    :param entries: ``[(ident, transaction, table headers)]`` in seq
        order.
    :returns: ``[([(ident, transaction), ...], tables header), ...]``.
        A single transaction larger than ``limit`` gets a message of its
        own; a table whose header (schema version) changes mid-batch
        starts a new message.
    """
    skeleton = wire.delta_message(stream, [{'seq': 2 ** 62}], {},
                                  key or 'x')
    base = wire.encoded_size(skeleton) + 32
    groups = []
    current, tables, size = [], {}, base
    for ident, tx, headers in entries:
        tx_size = wire.encoded_size(tx) + 1
        conflict = any(name in tables and tables[name] != header
                       for name, header in headers.items())
        extra = _header_size(headers, tables)
        if current and (conflict or size + tx_size + extra > limit):
            groups.append((current, tables))
            current, tables, size = [], {}, base
            extra = _header_size(headers)
        current.append((ident, tx))
        tables.update(headers)
        size += tx_size + extra
    if current:
        groups.append((current, tables))
    return groups


def publish_entries(publisher, metrics, stream, key, limit, entries):
    """Publish numbered transactions as delta messages, in order.

    The one publishing loop of the relay and of direct delivery: split at
    ``limit`` bytes (:func:`split_messages`), sign with ``key``, publish,
    count. It stops at the first message the broker did not confirm.

    :param entries: ``[(ident, transaction, table headers)]`` in seq order.
    :returns: ``(confirmed [(ident, transaction), ...], DeliveryError or
        None)``.
    """
    confirmed = []
    for group, tables in split_messages(entries, stream, key, limit):
        message = wire.delta_message(stream, [tx for _, tx in group],
                                     tables, key)
        try:
            publisher.publish(wire.EVENT_DELTA, message)
        except exceptions.DeliveryError as exc:
            return confirmed, exc
        confirmed.extend(group)
        metrics.messages_published.labels(stream).inc()
        metrics.deltas_published.labels(stream).inc(
            sum(len(tx['changes']) for _, tx in group))
    return confirmed, None


class Entry(collections.namedtuple(
        'Entry', 'id seq txid committed_at payload')):
    """An outbox entry as the relay reads it (``seq`` may be None)."""


class Held(object):
    """The held stream lock: ``conn`` to read on and the ``last_seq``.

    From :meth:`StreamLock.hold` (direct delivery) ``conn`` is the lock
    transaction itself and every write goes on it. From
    :meth:`StreamLock.hold_relay`, writes go through :meth:`assigning`
    (committed at once) and :meth:`marking`.
    """

    def __init__(self, conn, last_seq, lock=None):
        self.conn = conn
        self.last_seq = last_seq
        self._lock = lock

    def assigning(self):
        """Context: a connection whose writes are committed on exit."""
        return self._lock.assigning(self.conn)

    def marking(self):
        """Context: the connection to mark published entries on."""
        return self._lock.marking(self.conn)


class StreamLock(object):
    """Serialises everything that assigns ``stream``'s sequence numbers.

    PostgreSQL and MariaDB/MySQL: ``SELECT ... FOR UPDATE`` of the
    stream's row in a READ COMMITTED transaction (set on this connection
    only; MariaDB's default REPEATABLE READ is not used). SQLite: a
    process lock plus an ``flock`` on :func:`lock_file_path` (several
    processes on one database file), and for :meth:`hold` the database
    write lock of ``BEGIN IMMEDIATE``. The row is inserted when missing
    (a concurrent insert is tolerated).
    """

    def __init__(self, engine, stream):
        self._engine = engine
        self._stream = stream
        self._sqlite = engine.dialect.name == 'sqlite'
        self._plock = _process_lock(engine)
        self._lock_path = lock_file_path(engine, stream)
        self._row_ready = False

    @property
    def engine(self):
        return self._engine

    def _ensure_row(self):
        where = _STREAMS.c.stream == self._stream
        with self._engine.connect() as conn:
            found = conn.execute(sa.select(_STREAMS.c.stream)
                                 .where(where)).first()
            conn.rollback()
            if found is None:
                try:
                    with conn.begin():
                        conn.execute(_STREAMS.insert().values(
                            stream=self._stream, last_seq=0,
                            updated_at=utcnow()))
                except sa.exc.IntegrityError:
                    LOG.debug('Stream row %s was created concurrently',
                              self._stream)
        self._row_ready = True

    def _last_seq(self, conn, for_update):
        query = sa.select(_STREAMS.c.last_seq).where(
            _STREAMS.c.stream == self._stream)
        if for_update:
            query = query.with_for_update()
        return conn.execute(query).scalar_one()

    @contextlib.contextmanager
    def _serialised(self):
        with self._plock, _file_lock(self._lock_path):
            if not self._row_ready:
                self._ensure_row()
            yield

    @contextlib.contextmanager
    def hold(self):
        """Yield a :class:`Held` inside ONE lock transaction.

        The transaction commits when the block ends normally and rolls
        back when it raises (direct delivery: numbers are given and
        ``last_seq`` moved in the same transaction).
        """
        with self._serialised(), self._engine.connect() as conn:
            if self._sqlite:
                conn.execution_options(isolation_level='AUTOCOMMIT')
                with _immediate(conn):
                    yield Held(conn, self._last_seq(conn, False))
            else:
                conn.execution_options(isolation_level='READ COMMITTED')
                with conn.begin():
                    yield Held(conn, self._last_seq(conn, True))

    @contextlib.contextmanager
    def hold_relay(self):
        """Yield a :class:`Held` for a relay cycle (the lock held).

        PostgreSQL, MariaDB/MySQL: ``conn`` is the lock transaction L
        (READ COMMITTED: every read sees what was committed before it);
        :meth:`Held.marking` writes in L, committed on exit (rolled back
        when the block raises). SQLite: ``conn`` reads in autocommit and
        every write is a short ``BEGIN IMMEDIATE`` transaction (holding
        the database write lock for the whole cycle would block them).
        """
        with self._serialised(), self._engine.connect() as conn:
            if self._sqlite:
                conn.execution_options(isolation_level='AUTOCOMMIT')
                yield Held(conn, self._last_seq(conn, False), self)
            else:
                conn.execution_options(isolation_level='READ COMMITTED')
                with conn.begin():
                    yield Held(conn, self._last_seq(conn, True), self)

    @contextlib.contextmanager
    def assigning(self, conn):
        """A write committed on exit: SQLite on ``conn``, else on W.

        W is a connection of its own, so the numbers are durable before
        anything is published while L keeps the lock.
        """
        if self._sqlite:
            with _immediate(conn):
                yield conn
            return
        with self._engine.connect() as other:
            other.execution_options(isolation_level='READ COMMITTED')
            with other.begin():
                yield other

    @contextlib.contextmanager
    def marking(self, conn):
        """SQLite: a short transaction on ``conn``; else L (``conn``)."""
        if self._sqlite:
            with _immediate(conn):
                yield conn
        else:
            yield conn

    def set_last_seq(self, conn, seq):
        conn.execute(_STREAMS.update()
                     .where(_STREAMS.c.stream == self._stream)
                     .values(last_seq=seq, updated_at=utcnow()))

    def read_last_seq(self):
        """``last_seq`` as last committed, without taking the lock."""
        with self._engine.connect() as conn:
            got = conn.execute(sa.select(_STREAMS.c.last_seq).where(
                _STREAMS.c.stream == self._stream)).scalar()
        return got or 0


@contextlib.contextmanager
def _immediate(conn):
    """SQLite: ``BEGIN IMMEDIATE`` ... ``COMMIT`` on an autocommit conn."""
    # Driver-level autocommit, so that these statements are the only
    # transaction control pysqlite sees.
    conn.exec_driver_sql('BEGIN IMMEDIATE')
    try:
        yield
        conn.exec_driver_sql('COMMIT')
    except BaseException:
        conn.exec_driver_sql('ROLLBACK')
        raise


class Watermark(object):
    """Handed out by :meth:`Relay.lock_for_snapshot` (lock held)."""

    def __init__(self, relay, held):
        self._relay = relay
        self._held = held
        self.value = None

    @property
    def last_seq(self):
        return self._held.last_seq

    def publish_visible(self, snapshot_conn):
        """Publish what must precede ``snapshot_conn``'s S in the stream.

        First the entries numbered but not marked published (with their
        numbers), then the pending entries visible to S, numbered now.

        :returns: the watermark N (the last seq published).
        :raises DeliveryError: when the broker did not confirm; what was
            numbered stays numbered, for the next relay cycle.
        """
        relay = self._relay
        held = self._held
        ids = [row[0] for row in snapshot_conn.execute(relay.visible_ids)]
        while True:
            rows = relay.assigned_rows(held)
            if not rows:
                break
            relay.publish_all(held, rows)
        size = relay.batch_size
        for start in range(0, len(ids), size):
            chunk = ids[start:start + size]
            rows = held.conn.execute(
                relay.pending_query().where(_OUTBOX.c.id.in_(chunk))).all()
            relay.publish_all(held, relay.assign(held, rows))
        self.value = held.last_seq
        return self.value


class Relay(object):
    """Publishes a stream's committed outbox entries with gapless seqs.

    :param conf: the ConfigOpts (group ``[oslo_publish]``).
    :param engine: the host database's SQLAlchemy Engine.
    :param stream: the stream name.
    :param tables: ``{name: PublishedTable}`` (kept for the snapshot
        server; the relay itself publishes what the entries carry).
    :param publisher: a :class:`~oslo_publish.publisher.Publisher`.
    :param metrics: a :class:`~oslo_publish.metrics.HostMetrics`.
    """

    def __init__(self, conf, engine, stream, tables, publisher,
                 metrics=None):
        self._opts = conf.oslo_publish
        self._engine = engine
        self._stream = stream
        self.tables = tables
        self._publisher = publisher
        self._metrics = metrics or metrics_mod.HostMetrics()
        self._key = self._opts.signing_key
        self._lock = StreamLock(engine, stream)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = None
        self._last_sent = time.monotonic()
        self._batch_size = self._opts.batch_size
        # Statements built once (SQLAlchemy caches their compilation).
        columns = (_OUTBOX.c.id, _OUTBOX.c.seq, _OUTBOX.c.txid,
                   _OUTBOX.c.committed_at, _OUTBOX.c.payload)
        mine = _OUTBOX.c.stream == stream
        self._pending_query = (
            sa.select(*columns).where(mine)
            .where(_OUTBOX.c.seq.is_(None))
            .order_by(_OUTBOX.c.id))
        self._pending_batch = self._pending_query.limit(self.batch_size)
        # Numbered, not marked: always last_seq + 1 ... (see the module
        # docstring); the bound keeps retained entries out of the scan.
        self._assigned_batch = (
            sa.select(*columns).where(mine)
            .where(_OUTBOX.c.seq > sa.bindparam('last_seq'))
            .where(_OUTBOX.c.published_at.is_(None))
            .order_by(_OUTBOX.c.seq).limit(self.batch_size))
        self._max_seq = sa.select(sa.func.max(_OUTBOX.c.seq)).where(mine)
        self._any_pending = (
            sa.select(_OUTBOX.c.id).where(mine)
            .where(_OUTBOX.c.published_at.is_(None)).limit(1))
        self.visible_ids = (
            sa.select(_OUTBOX.c.id).where(mine)
            .where(_OUTBOX.c.seq.is_(None)).order_by(_OUTBOX.c.id))
        self._assign_seq = (
            _OUTBOX.update().where(_OUTBOX.c.id == sa.bindparam('eid'))
            .where(_OUTBOX.c.seq.is_(None))
            .values(seq=sa.bindparam('eseq')))
        ids = sa.bindparam('ids', expanding=True)
        self._delete_ids = _OUTBOX.delete().where(_OUTBOX.c.id.in_(ids))
        self._stamp_ids = (_OUTBOX.update().where(_OUTBOX.c.id.in_(ids))
                           .values(published_at=sa.bindparam('now')))
        self._expire = (_OUTBOX.delete().where(mine)
                        .where(_OUTBOX.c.seq.isnot(None))
                        .where(_OUTBOX.c.published_at
                               < sa.bindparam('before')))
        self._count_pending = (
            sa.select(sa.func.count(), sa.func.min(_OUTBOX.c.committed_at))
            .where(mine).where(_OUTBOX.c.published_at.is_(None)))

    @property
    def stream(self):
        return self._stream

    @property
    def engine(self):
        return self._engine

    @property
    def batch_size(self):
        return self._batch_size

    @property
    def stream_lock(self):
        return self._lock

    # ------------------------------------------------------------ thread

    def start(self):
        """Start the background thread (idempotent)."""
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name='oslo-publish-relay-%s' % self._stream,
            daemon=True)
        self._thread.start()
        LOG.info('Relay of stream %s started', self._stream)

    def wake(self):
        """Ask the thread to look at the outbox now (after a commit)."""
        self._wake.set()

    def wait_drained(self, timeout, interval=0.05):
        """Wait until the broker confirmed every committed entry.

        Wakes the relay and polls :func:`outbox.count_unpublished` of this
        stream (a graceful shutdown, a test or a tool wanting everything
        committed so far on the bus).

        :returns: True when drained within ``timeout`` seconds.
        """
        query = outbox.count_unpublished(self._stream)
        deadline = time.monotonic() + timeout
        while True:
            with self._engine.connect() as conn:
                if not conn.execute(query).scalar():
                    return True
            if time.monotonic() >= deadline:
                return False
            self.wake()
            time.sleep(interval)

    def stop(self, timeout=30.0):
        """Stop the thread; pending entries stay for the next relay."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        self._wake.set()
        thread.join(timeout)
        if thread.is_alive():
            LOG.warning('Relay of stream %s did not stop within %ss',
                        self._stream, timeout)
        else:
            LOG.info('Relay of stream %s stopped', self._stream)

    def _run(self):
        failures = 0
        woken = False
        while not self._stopping.is_set():
            started = time.monotonic()
            self._wake.clear()
            try:
                count = self.run_once(check=not woken)
                self._maybe_heartbeat()
            except exceptions.DeliveryError:
                failures += 1
                self._metrics.broker_retries.labels(self._stream).inc()
            except Exception as exc:  # noqa: broad - keep the thread alive
                failures += 1
                LOG.warning('Relay of stream %(stream)s failed, retrying: '
                            '%(exc)s', {'stream': self._stream, 'exc': exc})
            else:
                failures = 0
                woken = True
                if count >= self.batch_size:
                    continue
                woken = self._wake.wait(self._idle_delay())
                # Commits arriving faster than COALESCE share one cycle.
                linger = started + COALESCE - time.monotonic()
                if linger > 0:
                    self._stopping.wait(linger)
                continue
            delay = backoff(failures, self._opts.retry_max_backoff)
            LOG.debug('Relay of stream %s backs off %.2fs', self._stream,
                      delay)
            self._stopping.wait(delay)

    def _idle_delay(self):
        until_beat = (self._last_sent + self._opts.heartbeat_interval
                      - time.monotonic())
        return max(0.0, min(self._opts.relay_poll_interval, until_beat))

    def _maybe_heartbeat(self):
        now = time.monotonic()
        if now - self._last_sent < self._opts.heartbeat_interval:
            return
        self.heartbeat()

    def heartbeat(self):
        """Publish a heartbeat with the stream's last published seq."""
        seq = self._lock.read_last_seq()
        self._publisher.publish(
            wire.EVENT_HEARTBEAT,
            wire.heartbeat_message(self._stream, seq, self._key))
        self._last_sent = time.monotonic()
        self._metrics.heartbeats.labels(self._stream).inc()
        self._metrics.last_seq.labels(self._stream).set(seq)

    # ------------------------------------------------------------- cycle

    def pending_query(self):
        """Entries without a number, in id order (the lock not needed)."""
        return self._pending_query

    def run_once(self, check=True):
        """Publish at most ``batch_size`` entries not yet published.

        Numbered but unmarked entries first (with their numbers), then
        pending ones, numbered (and committed) before they are published.

        :param check: first look, without the lock, whether anything is
            pending (False when a commit just said so).
        :returns: the number of entries published (and confirmed).
        :raises DeliveryError: when the broker did not confirm (what was
            confirmed before is marked; the rest keeps its numbers).
        """
        if check and not self._anything_pending():
            self._set_gauges(0, 0.0, self._metrics_last_seq())
            return 0
        with self._lock.hold_relay() as held:
            rows = self.assigned_rows(held)
            if len(rows) < self.batch_size:
                pending = held.conn.execute(self._pending_batch).all()
                rows += self.assign(
                    held, pending[:self.batch_size - len(rows)])
            done, failure = self.publish_rows(held, rows)
        if failure is None and len(rows) < self.batch_size:
            # The outbox was drained: no need to count it.
            self._set_gauges(0, 0.0, held.last_seq)
        else:
            self._refresh_gauges(held.last_seq)
        if failure is not None:
            raise failure
        return done

    def _anything_pending(self):
        """Cheap unlocked check, so idle polls never take the lock."""
        with self._engine.connect() as conn:
            return conn.execute(self._any_pending).first() is not None

    def _metrics_last_seq(self):
        return self._metrics.value('oslo_publish_last_seq',
                                   stream=self._stream)

    def assigned_rows(self, held):
        """Up to ``batch_size`` numbered, unmarked entries in seq order."""
        return [Entry(*row) for row in held.conn.execute(
            self._assigned_batch, {'last_seq': held.last_seq})]

    def assign(self, held, rows):
        """Number pending ``rows`` (id order) and commit that at once.

        The first number is ``max(last_seq, highest assigned) + 1``.

        :returns: the :class:`Entry` list with the numbers given.
        """
        if not rows:
            return []
        highest = held.conn.execute(self._max_seq).scalar()
        first = next_seq(held.last_seq, [highest])
        entries = [Entry(row.id, first + n, row.txid, row.committed_at,
                         row.payload) for n, row in enumerate(rows)]
        with held.assigning() as conn:
            conn.execute(self._assign_seq, [{'eid': e.id, 'eseq': e.seq}
                                            for e in entries])
        return entries

    def publish_all(self, held, entries):
        """:meth:`publish_rows`; raise its DeliveryError, if any."""
        done, failure = self.publish_rows(held, entries)
        if failure is not None:
            raise failure
        return done

    def publish_rows(self, held, rows):
        """Publish numbered entries (seq order) under ``held``; mark them.

        :returns: ``(entries confirmed, DeliveryError or None)``.
        """
        if not rows:
            return 0, None
        entries = []
        for row in rows:
            data = json.loads(row.payload)
            tx = {'seq': row.seq, 'txid': row.txid,
                  'committed_at': as_utc(row.committed_at).isoformat(),
                  'changes': data.get('changes', [])}
            entries.append((row.id, tx, data.get('tables') or {}))
        confirmed, failure = publish_entries(
            self._publisher, self._metrics, self._stream, self._key,
            self._opts.max_message_bytes, entries)
        if confirmed:
            self._last_sent = time.monotonic()
            self._mark(held, confirmed)
        return len(confirmed), failure

    def _mark(self, held, confirmed):
        """Delete (or stamp) confirmed entries and move ``last_seq``."""
        ids = [entry_id for entry_id, _ in confirmed]
        seq = max(held.last_seq, confirmed[-1][1]['seq'])
        now = utcnow()
        retention = self._opts.outbox_retention
        with held.marking() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                if retention <= 0:
                    conn.execute(self._delete_ids, {'ids': chunk})
                else:
                    conn.execute(self._stamp_ids, {'ids': chunk,
                                                   'now': now})
            if retention > 0:
                conn.execute(self._expire, {
                    'before': now - datetime.timedelta(seconds=retention)})
            self._lock.set_last_seq(conn, seq)
        held.last_seq = seq

    def _refresh_gauges(self, last_seq):
        with self._engine.connect() as conn:
            count, oldest = conn.execute(self._count_pending).one()
        lag = 0.0
        if oldest is not None:
            lag = max(0.0, (datetime.datetime.now(datetime.timezone.utc)
                            - as_utc(oldest)).total_seconds())
        self._set_gauges(count, lag, last_seq)

    def _set_gauges(self, backlog, lag, last_seq):
        self._metrics.relay_backlog.labels(self._stream).set(backlog)
        self._metrics.relay_lag.labels(self._stream).set(lag)
        self._metrics.last_seq.labels(self._stream).set(last_seq)

    # ---------------------------------------------------------- snapshot

    @contextlib.contextmanager
    def lock_for_snapshot(self):
        """Hold the stream lock for the watermark protocol.

        Usage (the snapshot server)::

            with relay.lock_for_snapshot() as mark:
                s = open_snapshot_transaction()   # S, snapshot taken
                n = mark.publish_visible(s)
            # lock released: relays everywhere continue after N

        Relays of this stream in every process wait while it is held.
        """
        with self._lock.hold_relay() as held:
            yield Watermark(self, held)
        self._refresh_gauges(held.last_seq)
