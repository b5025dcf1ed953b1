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


"""The relay thread and its cycle (see the package docstring)."""

import contextlib
import datetime
import json
import os
import threading
import time

from oslo_log import log
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from oslo_publish import exceptions
from oslo_publish import metrics as metrics_mod
from oslo_publish import outbox
from oslo_publish.relay import lock as lock_mod
from oslo_publish.relay import numbering
from oslo_publish.relay import pacing
from oslo_publish.relay import publishing
from oslo_publish.relay import wake as wake_mod
from oslo_publish.relay import watermark as watermark_mod
from oslo_publish import wire

LOG = log.getLogger(__name__)

_OUTBOX = outbox.outbox
_NUMBERED = _OUTBOX.alias('numbered')


class Relay(object):
    """Publishes a stream's committed outbox entries with gapless seqs.

    :param conf: the ConfigOpts (group ``[oslo_publish]``).
    :param engine: the host database's SQLAlchemy Engine.
    :param stream: the stream name.
    :param tables: ``{name: PublishedTable}`` (kept for the snapshot
        server; the relay itself publishes what the entries carry).
    :param publisher: a :class:`~oslo_publish.publisher.Publisher`.
    :param metrics: a :class:`~oslo_publish.metrics.HostMetrics`.
    :param listen: wait for PostgreSQL ``NOTIFY`` of the stream (None:
        when ``relay_in_process`` is false, i.e. a standalone relay).

    :ivar activity: the :class:`~oslo_publish.relay.pacing.Activity` of
        the writers of this process (set by ``install()`` for an
        in-process relay), or None: how the thread paces itself
        (:meth:`~oslo_publish.relay.pacing.Pacer.pause`).
    """

    def __init__(self, conf, engine, stream, tables, publisher,
                 metrics=None, listen=None):
        self._opts = conf.oslo_publish
        self._engine = engine
        self._stream = stream
        self.tables = tables
        self._publisher = publisher
        self._metrics = metrics or metrics_mod.HostMetrics()
        self._key = self._opts.signing_key
        self._lock = lock_mod.StreamLock(engine, stream)
        self._waker = wake_mod.Waker()
        self.activity = None
        self._stopping = threading.Event()
        self._thread = None
        self._last_sent = time.monotonic()
        self._batch_size = self._opts.batch_size
        if listen is None:
            listen = not self._opts.relay_in_process
        self._listen = listen and engine.dialect.name == 'postgresql'
        self._woken_ever = False
        self._poll = wake_mod.FAST_POLL
        # The highest last_seq seen: one going backwards is a database
        # restored underneath the relay, and starts a new epoch.
        self._seen_last_seq = None
        self._pid = os.getpid()
        # Held by the thread while it works: a fork waits for the end of
        # the cycle, so a child never inherits a lock held mid-cycle.
        self.fork_guard = threading.Lock()
        #: Set while the thread waits for work (tests, tools).
        self.idle = threading.Event()
        # Statements built once (SQLAlchemy caches their compilation).
        columns = (_OUTBOX.c.id, _OUTBOX.c.seq, _OUTBOX.c.txid,
                   _OUTBOX.c.committed_at, _OUTBOX.c.payload)
        mine = _OUTBOX.c.stream == stream
        self._pending_query = (
            sa.select(*columns).where(mine)
            .where(_OUTBOX.c.seq.is_(None))
            .order_by(_OUTBOX.c.id))
        # Numbered, not marked: always last_seq + 1 ... (see the package
        # docstring); the bound keeps retained entries out of the scan.
        self._assigned_batch = (
            sa.select(*columns).where(mine)
            .where(_OUTBOX.c.seq > sa.bindparam('last_seq'))
            .where(_OUTBOX.c.published_at.is_(None))
            .order_by(_OUTBOX.c.seq).limit(self.batch_size))
        # Both in one round trip, each part along the index.
        self._cycle_batch = sa.union_all(
            sa.select(self._assigned_batch.subquery()),
            sa.select(self._pending_query.limit(self.batch_size)
                      .subquery()))
        self._max_seq = sa.select(sa.func.max(_OUTBOX.c.seq)).where(mine)
        # PostgreSQL with psycopg2: steps 2 and 3 of the cycle in one
        # statement on W (numbering.CLAIM_SQL), one round trip fewer.
        self._claim_sql = None
        if self._lock.explicit and self._lock.autocommit_writes:
            self._claim_sql = numbering.claim_sql(_OUTBOX, engine.dialect)
        # PostgreSQL with psycopg2: steps 1 to 3 in one round trip on L
        # (StreamLock.claim_sql), the cycle's other one being the marking
        # with L's COMMIT.
        self._claim_locked = None
        if self._lock.explicit:
            self._claim_locked = self._lock.claim_sql(*numbering.claim_parts(
                _OUTBOX, outbox.streams, engine.dialect))
        # Committed by itself on PostgreSQL: all or nothing, so that a
        # mismatch leaves no number behind (the guard).
        self._number = numbering.number_statement(
            _OUTBOX, _NUMBERED, engine.dialect.name,
            guard=self._lock.autocommit_writes)
        self._any_pending = (
            sa.select(_OUTBOX.c.id).where(mine)
            .where(_OUTBOX.c.published_at.is_(None)).limit(1))
        self.visible_ids = (
            sa.select(_OUTBOX.c.id).where(mine)
            .where(_OUTBOX.c.seq.is_(None)).order_by(_OUTBOX.c.id))
        ids = sa.bindparam('ids', expanding=True)
        self._delete_ids = _OUTBOX.delete().where(_OUTBOX.c.id.in_(ids))
        # PostgreSQL: delete the confirmed entries and move last_seq in
        # one statement (a data-modifying WITH).
        self._mark_in_one = None
        if engine.dialect.name == 'postgresql':
            streams = outbox.streams
            self._mark_in_one = (
                streams.update().where(streams.c.stream == stream)
                .values(last_seq=sa.bindparam('seq'),
                        updated_at=sa.bindparam('now'))
                .add_cte(self._delete_ids.cte('confirmed')))
            # The same as driver SQL (the ids as one array), sent with
            # the COMMIT at the end of a cycle (Held.write_and_commit).
            array = sa.cast(sa.bindparam('ids'),
                            postgresql.ARRAY(sa.BigInteger))
            compiled = (
                streams.update().where(
                    streams.c.stream == sa.bindparam('stream'))
                .values(last_seq=sa.bindparam('seq'),
                        updated_at=sa.bindparam('now'))
                .add_cte(_OUTBOX.delete().where(
                    _OUTBOX.c.id == sa.any_(array)).cte('confirmed'))
            ).compile(dialect=engine.dialect)
            self._mark_sql = compiled.string
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
    def metrics(self):
        """The :class:`~oslo_publish.metrics.HostMetrics` it updates."""
        return self._metrics

    @property
    def batch_size(self):
        return self._batch_size

    @property
    def retains_entries(self):
        """True when published entries are kept (``outbox_retention``)."""
        return self._opts.outbox_retention > 0

    @property
    def stream_lock(self):
        return self._lock

    @property
    def epoch(self):
        """The stream's epoch as last read under the lock (or None)."""
        return self._lock.epoch

    # ------------------------------------------------------------ thread

    def start(self):
        """Start the background thread (idempotent)."""
        if self._thread is not None:
            return
        self._stopping.clear()
        self._lock.keep = True
        self._thread = threading.Thread(
            target=self._run, name='oslo-publish-relay-%s' % self._stream,
            daemon=True)
        self._thread.start()
        LOG.info('Relay of stream %s started', self._stream)

    @property
    def running(self):
        """True while the thread runs in this process."""
        return (self._thread is not None and self._pid == os.getpid()
                and self._thread.is_alive())

    def wake(self):
        """Ask the thread to look at the outbox now (after a commit).

        Works from any thread, and from processes forked after the
        relay was made (their wake-ups reach the thread of this one).
        """
        self._waker.wake()

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
        self._lock.keep = False
        if thread is None or self._pid != os.getpid():
            self._lock.close()
            return
        self._stopping.set()
        self._waker.wake()
        thread.join(timeout)
        if thread.is_alive():
            LOG.warning('Relay of stream %s did not stop within %ss',
                        self._stream, timeout)
        else:
            self._lock.close()
            LOG.info('Relay of stream %s stopped', self._stream)

    def after_fork_in_child(self):
        """In a forked child: forget the parent's thread and sessions.

        The child's wake-ups still reach the parent's thread (the pipe is
        shared); call :meth:`start` to run a relay in the child too.
        """
        self._lock.forget()
        self._thread = None
        self._pid = os.getpid()
        self._stopping = threading.Event()
        self.fork_guard = threading.Lock()

    def _run(self):
        failures = 0
        woken = True
        busy = False  # work arrived while the last cycle ran
        listener = (wake_mod.Listener(self._engine, self._stream)
                    if self._listen else None)
        pacer = pacing.Pacer(self._opts.relay_cpu_share,
                             self._opts.relay_max_pause)
        try:
            while not self._stopping.is_set():
                # Busy or writers running: space cycles by their cost;
                # what commits in the pause is published by the next
                # cycle. Wake-ups from forked writers: those are unseen.
                activity = None if self._waker.foreign else self.activity
                if pacer.pause(busy, activity, self._stopping):
                    break
                if self._waker.drain():
                    woken = self._woken_ever = True
                if listener is not None:
                    listener.drain()
                try:
                    with self.fork_guard:
                        pacer.begin()
                        count = 0
                        count = self.run_once(check=not woken, fold=True)
                        self._maybe_heartbeat()
                except exceptions.DeliveryError:
                    failures += 1
                    self._metrics.broker_retries.labels(self._stream).inc()
                except Exception as exc:  # noqa: broad - keep it alive
                    failures += 1
                    LOG.warning('Relay of stream %(stream)s failed, '
                                'retrying: %(exc)s',
                                {'stream': self._stream, 'exc': exc})
                else:
                    failures = 0
                    woken = False
                finally:
                    pacer.end(count > 0)
                if failures == 0:
                    if count >= self.batch_size:
                        woken = busy = True  # more waiting: go on
                        continue
                    others = ()
                    if listener is not None:
                        fd = listener.fileno()
                        others = () if fd is None else (fd,)
                    busy = bool(self._waker.wait(0, others))
                    if busy:
                        woken = True
                        continue
                    self._flush()
                    self.idle.set()
                    ready = self._waker.wait(self._idle_delay(count, others),
                                             others)
                    self.idle.clear()
                    woken = bool(ready)
                    continue
                busy = False
                self._flush()
                delay = numbering.backoff(failures,
                                          self._opts.retry_max_backoff)
                LOG.debug('Relay of stream %s backs off %.2fs',
                          self._stream, delay)
                self._stopping.wait(delay)
        finally:
            self._flush()
            if listener is not None:
                listener.close()

    def _flush(self):
        """Commit a marking left for the next cycle (going idle, stopping).

        A failure only loses that marking: the entries are published
        again with their numbers.
        """
        if not self._lock.deferred:
            return
        try:
            with self.fork_guard:
                self._lock.flush()
        except Exception as exc:  # noqa: broad - keep the thread alive
            LOG.warning('Relay of stream %(stream)s could not mark its '
                        'last batch: %(exc)s',
                        {'stream': self._stream, 'exc': exc})

    def _idle_delay(self, count, others):
        """How long to wait for a wake-up before looking anyway."""
        until_beat = (self._last_sent + self._opts.heartbeat_interval
                      - time.monotonic())
        poll = self._opts.relay_poll_interval
        if not self._woken_ever and not others:
            # Nothing wakes this relay (a standalone relay without
            # NOTIFY): poll quickly after activity, back off when idle.
            self._poll = (wake_mod.FAST_POLL if count
                          else min(poll, self._poll * 2))
            poll = self._poll
        return max(0.0, min(poll, until_beat))

    def _maybe_heartbeat(self):
        now = time.monotonic()
        if now - self._last_sent < self._opts.heartbeat_interval:
            return
        self.heartbeat()

    def heartbeat(self):
        """Publish a heartbeat with the stream's last published seq."""
        seq, epoch = self._lock.read_position()
        self._publisher.publish(
            wire.EVENT_HEARTBEAT,
            wire.heartbeat_message(self._stream, seq, self._key,
                                   epoch=epoch))
        self._last_sent = time.monotonic()
        self._metrics.heartbeats.labels(self._stream).inc()
        self._metrics.last_seq.labels(self._stream).set(seq)

    # ------------------------------------------------------------- cycle

    def pending_query(self):
        """Entries without a number, in id order (the lock not needed)."""
        return self._pending_query

    def run_once(self, check=True, fold=False):
        """Publish at most ``batch_size`` entries not yet published.

        Numbered but unmarked entries first (with their numbers), then
        pending ones, numbered (and committed) before they are published.
        Both are read in one statement.

        :param check: first look, without the lock, whether anything is
            pending (False when a commit just said so).
        :param fold: the caller runs the next cycle at once when one is
            due (the relay's thread): a busy cycle may leave its marking
            to it (:meth:`publish_rows`).
        :returns: the number of entries published (and confirmed).
        :raises DeliveryError: when the broker did not confirm (what was
            confirmed before is marked; the rest keeps its numbers).
        """
        if check and not self._anything_pending():
            self._set_gauges(0, 0.0)  # last_seq unchanged
            return 0
        claim = None
        if self._claim_locked is not None:
            # Every wake-up so far came after its commit: the claim below
            # sees those entries, so they need no cycle of their own.
            self._waker.drain_pending()
            claim = (self._claim_locked, {'stream': self._stream,
                                          'limit': self.batch_size})
        with self.holding(claim) as held:
            if claim is not None:
                rows = [publishing.Entry(*row) for row in held.claimed]
            else:
                self._waker.drain_pending()  # as above: the lock is held
                if self._claim_sql is not None:
                    rows = self.claim(held)
                else:
                    rows = self._read_and_assign(held)
            done, failure = self.publish_rows(held, rows, last=True,
                                              fold=fold)
        if failure is None and len(rows) < self.batch_size:
            # The outbox was drained: no need to count it.
            self._set_gauges(0, 0.0, held.last_seq)
        else:
            self._refresh_gauges(held.last_seq)
        if failure is not None:
            raise failure
        return done

    def claim(self, held):
        """Numbered, unmarked entries plus newly numbered ones, committed.

        PostgreSQL (psycopg2) only: :data:`numbering.CLAIM_SQL` on W, in
        one round trip: the numbers are durable when it returns.

        :returns: up to ``batch_size`` :class:`Entry`, in seq order.
        """
        with held.assigning() as conn:
            rows = [publishing.Entry(*row) for row in conn.exec_driver_sql(
                self._claim_sql, {'stream': self._stream,
                                  'last_seq': held.last_seq,
                                  'limit': self.batch_size})]
        rows.sort(key=lambda e: e.seq)
        return rows

    def _read_and_assign(self, held):
        """Steps 2 and 3 in two statements (MariaDB/MySQL, SQLite)."""
        assigned, pending = [], []
        for row in held.conn.execute(self._cycle_batch,
                                     {'last_seq': held.last_seq}):
            (pending if row.seq is None else assigned).append(
                publishing.Entry(*row))
        assigned.sort(key=lambda e: e.seq)
        pending.sort(key=lambda e: e.id)
        rows = assigned
        if len(rows) < self.batch_size:
            # Every numbered entry was read: the highest is known.
            highest = rows[-1].seq if rows else held.last_seq
            rows += self.assign(
                held, pending[:self.batch_size - len(rows)], highest)
        return rows

    @contextlib.contextmanager
    def holding(self, claim=None):
        """Hold the stream lock; renew the epoch if ``last_seq`` fell.

        :param claim: see :meth:`StreamLock.hold_relay
            <oslo_publish.relay.lock.StreamLock.hold_relay>`.
        """
        with self._lock.hold_relay(claim) as held:
            seen = self._seen_last_seq
            if seen is not None and held.last_seq < seen:
                LOG.warning('Stream %(stream)s: last_seq went back from '
                            '%(seen)d to %(now)d (database restored?)',
                            {'stream': self._stream, 'seen': seen,
                             'now': held.last_seq})
                with held.marking() as conn:
                    held.epoch = self._lock.renew_epoch(conn)
            self._seen_last_seq = held.last_seq
            yield held
            if not held.deferred:
                self._seen_last_seq = held.last_seq

    def saw_last_seq(self, seq):
        """``last_seq`` reached ``seq`` outside this relay's cycles.

        (Publishing straight from the log.) A later cycle that finds
        ``last_seq`` below it starts a new epoch, as for its own.
        """
        seen = self._seen_last_seq
        if seen is None or seq > seen:
            self._seen_last_seq = seq

    def _anything_pending(self):
        """Cheap unlocked check, so idle polls never take the lock."""
        with self._engine.connect() as conn:
            return conn.execute(self._any_pending).first() is not None

    def assigned_rows(self, held):
        """Up to ``batch_size`` numbered, unmarked entries in seq order."""
        return [publishing.Entry(*row) for row in held.conn.execute(
            self._assigned_batch, {'last_seq': held.last_seq})]

    def assign(self, held, rows, highest=None):
        """Number pending ``rows`` (id order) and commit that at once.

        The first number is ``max(last_seq, highest assigned) + 1``, in
        one UPDATE.

        :param highest: the highest number assigned so far (read from
            the outbox when None).
        :returns: the :class:`Entry` list with the numbers given.
        """
        if not rows:
            return []
        if highest is None:
            highest = held.conn.execute(self._max_seq).scalar()
        first = numbering.next_seq(held.last_seq, [highest])
        entries = [publishing.Entry(row.id, first + n, row.txid,
                                    row.committed_at, row.payload)
                   for n, row in enumerate(rows)]
        with held.assigning() as conn:
            for start in range(0, len(entries), 500):
                chunk = entries[start:start + 500]
                ids = [e.id for e in chunk]
                if self._number is not None:
                    done = conn.execute(self._number, numbering.number_params(
                        ids, chunk[0].seq)).rowcount
                else:
                    numbers = sa.case({e.id: e.seq for e in chunk},
                                      value=_OUTBOX.c.id)
                    done = conn.execute(
                        _OUTBOX.update().where(_OUTBOX.c.id.in_(ids))
                        .where(_OUTBOX.c.seq.is_(None))
                        .values(seq=numbers)).rowcount
                if done != len(chunk):
                    raise RuntimeError('numbered %d of %d entries of '
                                       'stream %s' % (done, len(chunk),
                                                      self._stream))
        return entries

    def publish_all(self, held, entries):
        """:meth:`publish_rows`; raise its DeliveryError, if any."""
        done, failure = self.publish_rows(held, entries)
        if failure is not None:
            raise failure
        return done

    def publish_rows(self, held, rows, last=False, fold=False):
        """Publish numbered entries (seq order) under ``held``; mark them.

        :param last: nothing follows in this hold: the marking may commit
            the lock transaction (releasing the lock) in the same round
            trip.
        :param fold: with ``last``: when another cycle follows at once
            (a wake-up came during this one, or the batch was full) and
            everything was confirmed, the marking and the ``COMMIT`` go
            with that cycle's first round trip instead
            (:meth:`Held.write_and_commit
            <oslo_publish.relay.lock.Held.write_and_commit>`).
        :returns: ``(entries confirmed, DeliveryError or None)``.
        """
        if not rows:
            return 0, None
        entries, bounds = [], []
        for row in rows:
            bounds.append(publishing.payload_bound(row.payload, row.txid))
            data = json.loads(row.payload)
            tx = {'seq': row.seq, 'txid': row.txid,
                  'committed_at': numbering.as_utc(
                      row.committed_at).isoformat(),
                  'changes': data.get('changes', [])}
            entries.append((row.id, tx, data.get('tables') or {}))
        confirmed, failure = publishing.publish_entries(
            self._publisher, self._metrics, self._stream, self._key,
            self._opts.max_message_bytes, entries, epoch=held.epoch,
            bounds=bounds)
        if confirmed:
            self._last_sent = time.monotonic()
            self._mark(held, confirmed, last,
                       fold=fold and failure is None and
                       (self._waker.pending or len(rows) >= self.batch_size))
        return len(confirmed), failure

    def publish_transactions(self, entries, epoch):
        """Publish numbered transactions that are not outbox entries.

        For log-based capture publishing straight from the log
        (:mod:`oslo_publish.logcapture.direct`), whose caller holds
        the stream lock and records ``last_seq`` itself.

        :param entries: ``[(seq, transaction, table headers)]`` in seq
            order.
        :returns: ``(confirmed, DeliveryError or None)``, as
            :func:`~oslo_publish.relay.publishing.publish_entries`.
        """
        confirmed, failure = publishing.publish_entries(
            self._publisher, self._metrics, self._stream, self._key,
            self._opts.max_message_bytes, entries, epoch=epoch)
        if confirmed:
            self._last_sent = time.monotonic()
        if failure is not None:
            self._metrics.broker_retries.labels(self._stream).inc()
        return confirmed, failure

    def _mark(self, held, confirmed, last=False, fold=False):
        """Delete (or stamp) confirmed entries and move ``last_seq``."""
        ids = [entry_id for entry_id, _ in confirmed]
        seq = max(held.last_seq, confirmed[-1][1]['seq'])
        now = numbering.utcnow()
        retention = self._opts.outbox_retention
        if last and retention <= 0 and held.can_commit_with and \
                len(ids) <= 500:
            held.write_and_commit(self._mark_sql, {
                'ids': ids, 'seq': seq, 'now': now,
                'stream': self._stream}, defer=fold)
            held.last_seq = seq
            return
        if retention <= 0 and self._mark_in_one is not None and \
                len(ids) <= 500:
            with held.marking() as conn:
                conn.execute(self._mark_in_one,
                             {'ids': ids, 'seq': seq, 'now': now})
            held.last_seq = seq
            return
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
                            - numbering.as_utc(oldest)).total_seconds())
        self._set_gauges(count, lag, last_seq)

    def _set_gauges(self, backlog, lag, last_seq=None):
        """Set the gauges; ``last_seq`` None leaves that one as it is.

        (An idle look reads no position: reading the gauge back from the
        registry would collect every metric of the process.)
        """
        self._metrics.relay_backlog.labels(self._stream).set(backlog)
        self._metrics.relay_lag.labels(self._stream).set(lag)
        if last_seq is not None:
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
        ``mark.epoch`` is the stream's epoch.
        """
        with self.holding() as held:
            yield watermark_mod.Watermark(self, held)
        self._refresh_gauges(held.last_seq)
