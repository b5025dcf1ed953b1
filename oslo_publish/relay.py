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

One relay cycle (:meth:`Relay.run_once`) runs in ONE database transaction
that holds the stream lock (:class:`StreamLock`):

1. lock the stream's ``oslo_publish_streams`` row (``SELECT ... FOR
   UPDATE`` at READ COMMITTED; on SQLite ``BEGIN IMMEDIATE`` plus a process
   lock), which serialises every relay of the stream in every process
   using the same database;
2. read at most ``batch_size`` pending entries (``seq IS NULL``) in id
   order and give them ``last_seq + 1 ...``;
3. publish them as delta messages (split at ``max_message_bytes``);
4. only for what the broker confirmed: delete the entries (or stamp
   ``seq``/``published_at`` when ``outbox_retention`` keeps them), move
   ``last_seq``, commit.

Failure policy: a publish that is not confirmed leaves its entries
pending and consumes no sequence number (messages of the same batch that
were confirmed before it are committed); the relay backs off (capped,
jittered, exponential) and tries again, forever. Nothing is lost; a
message may be published twice with the same sequence numbers, which
consumers ignore. Known window: if the relay dies after the broker
confirmed and before its commit, the entries are published again; their
sequence numbers are the same unless an entry with a smaller id (a
transaction that inserted its entry earlier but committed later) became
visible in between.

The relay thread is woken by :meth:`Relay.wake` right after a host
commit and polls every ``relay_poll_interval`` as a backstop. When
nothing was published for ``heartbeat_interval`` it publishes a
heartbeat carrying the stream's ``last_seq``.

:meth:`Relay.lock_for_snapshot` implements the watermark protocol of the
snapshot server (DESIGN.md): with the stream lock held, the caller opens
its snapshot transaction S; :meth:`Watermark.publish_visible` then
publishes exactly the pending entries visible to S and returns the
watermark N. Everything S sees has ``seq <= N``; everything else is
published later with ``seq > N``.
"""

import contextlib
import datetime
import json
import random
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


class Held(object):
    """The open lock transaction: ``conn`` and the stream's ``last_seq``."""

    def __init__(self, conn, last_seq):
        self.conn = conn
        self.last_seq = last_seq


class StreamLock(object):
    """Serialises everything that assigns ``stream``'s sequence numbers.

    PostgreSQL and MariaDB/MySQL: ``SELECT ... FOR UPDATE`` of the
    stream's row in a READ COMMITTED transaction (set on this connection
    only; MariaDB's default REPEATABLE READ is not used). SQLite: the
    database write lock of ``BEGIN IMMEDIATE`` plus a process lock. The
    row is inserted when missing (a concurrent insert is tolerated).
    """

    def __init__(self, engine, stream):
        self._engine = engine
        self._stream = stream
        self._sqlite = engine.dialect.name == 'sqlite'
        self._plock = _process_lock(engine)
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
    def hold(self):
        """Yield a :class:`Held` inside the lock transaction.

        The transaction commits when the block ends normally and rolls
        back when it raises.
        """
        with self._plock:
            if not self._row_ready:
                self._ensure_row()
            with self._engine.connect() as conn:
                if self._sqlite:
                    yield from self._hold_sqlite(conn)
                else:
                    conn.execution_options(isolation_level='READ COMMITTED')
                    with conn.begin():
                        yield Held(conn, self._last_seq(conn, True))

    def _hold_sqlite(self, conn):
        # Driver-level autocommit so that our explicit BEGIN IMMEDIATE is
        # the only transaction control pysqlite sees.
        conn.execution_options(isolation_level='AUTOCOMMIT')
        conn.exec_driver_sql('BEGIN IMMEDIATE')
        try:
            held = Held(conn, self._last_seq(conn, False))
            yield held
        except BaseException:
            conn.exec_driver_sql('ROLLBACK')
            raise
        conn.exec_driver_sql('COMMIT')

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
        """Publish the pending entries visible to ``snapshot_conn``'s S.

        :returns: the watermark N (the last seq given out).
        :raises DeliveryError: when the broker did not confirm; the lock
            transaction is then rolled back.
        """
        relay = self._relay
        ids = [row[0] for row in snapshot_conn.execute(
            sa.select(_OUTBOX.c.id)
            .where(_OUTBOX.c.stream == relay.stream)
            .where(_OUTBOX.c.seq.is_(None))
            .order_by(_OUTBOX.c.id))]
        size = relay.batch_size
        for start in range(0, len(ids), size):
            chunk = ids[start:start + size]
            rows = self._held.conn.execute(
                relay.pending_query().where(_OUTBOX.c.id.in_(chunk))).all()
            done, failure = relay.publish_rows(self._held, rows)
            if failure is not None:
                raise failure
        self.value = self._held.last_seq
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
        self._pending_query = (
            sa.select(_OUTBOX.c.id, _OUTBOX.c.txid, _OUTBOX.c.committed_at,
                      _OUTBOX.c.payload)
            .where(_OUTBOX.c.stream == stream)
            .where(_OUTBOX.c.seq.is_(None))
            .order_by(_OUTBOX.c.id))
        self._pending_batch = self._pending_query.limit(self.batch_size)
        self._any_pending = (
            sa.select(_OUTBOX.c.id).where(_OUTBOX.c.stream == stream)
            .where(_OUTBOX.c.seq.is_(None)).limit(1))
        self._delete_ids = _OUTBOX.delete().where(
            _OUTBOX.c.id.in_(sa.bindparam('ids', expanding=True)))

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
        return self._pending_query

    def run_once(self, check=True):
        """Publish at most ``batch_size`` pending entries.

        :param check: first look, without the lock, whether anything is
            pending (False when a commit just said so).
        :returns: the number of entries published (and confirmed).
        :raises DeliveryError: when the broker did not confirm (what was
            confirmed before is committed).
        """
        if check and not self._anything_pending():
            self._set_gauges(0, 0.0, self._metrics_last_seq())
            return 0
        with self._lock.hold() as held:
            rows = held.conn.execute(self._pending_batch).all()
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

    def publish_rows(self, held, rows):
        """Publish ``rows`` (outbox entries) under ``held``; mark them.

        :returns: ``(entries confirmed, DeliveryError or None)``.
        """
        if not rows:
            return 0, None
        entries = []
        seq = held.last_seq
        for row in rows:
            seq += 1
            data = json.loads(row.payload)
            tx = {'seq': seq, 'txid': row.txid,
                  'committed_at': as_utc(row.committed_at).isoformat(),
                  'changes': data.get('changes', [])}
            entries.append((row.id, tx, data.get('tables') or {}))
        confirmed = []
        failure = None
        for group, tables in split_messages(
                entries, self._stream, self._key,
                self._opts.max_message_bytes):
            message = wire.delta_message(
                self._stream, [tx for _, tx in group], tables, self._key)
            try:
                self._publisher.publish(wire.EVENT_DELTA, message)
            except exceptions.DeliveryError as exc:
                failure = exc
                break
            confirmed.extend(group)
            self._metrics.messages_published.labels(self._stream).inc()
            self._metrics.deltas_published.labels(self._stream).inc(
                sum(len(tx['changes']) for _, tx in group))
        if confirmed:
            self._mark(held, confirmed)
            self._last_sent = time.monotonic()
        return len(confirmed), failure

    def _mark(self, held, confirmed):
        conn = held.conn
        ids = [entry_id for entry_id, _ in confirmed]
        now = utcnow()
        retention = self._opts.outbox_retention
        if retention <= 0:
            for start in range(0, len(ids), 500):
                conn.execute(self._delete_ids,
                             {'ids': ids[start:start + 500]})
        else:
            conn.execute(
                _OUTBOX.update().where(_OUTBOX.c.id == sa.bindparam('eid'))
                .values(seq=sa.bindparam('eseq'), published_at=now),
                [{'eid': entry_id, 'eseq': tx['seq']}
                 for entry_id, tx in confirmed])
            conn.execute(_OUTBOX.delete()
                         .where(_OUTBOX.c.stream == self._stream)
                         .where(_OUTBOX.c.seq.isnot(None))
                         .where(_OUTBOX.c.published_at
                                < now - datetime.timedelta(
                                    seconds=retention)))
        held.last_seq = confirmed[-1][1]['seq']
        self._lock.set_last_seq(conn, held.last_seq)

    def _refresh_gauges(self, last_seq):
        with self._engine.connect() as conn:
            count, oldest = conn.execute(
                sa.select(sa.func.count(), sa.func.min(_OUTBOX.c.committed_at))
                .where(_OUTBOX.c.stream == self._stream)
                .where(_OUTBOX.c.seq.is_(None))).one()
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
        with self._lock.hold() as held:
            yield Watermark(self, held)
        self._refresh_gauges(held.last_seq)
