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

"""Staging: decoded transactions -> outbox rows, with their log position.

:class:`Stager` runs a thread in the relay's process. It reads batches of
:class:`~oslo_publish.logcapture.base.LogTransaction` from a reader and,
in ONE database transaction per batch:

1. locks the stream's ``oslo_publish_log_positions`` row (``SELECT ...
   FOR UPDATE``) and reads the last staged position P;
2. drops every transaction whose position is not after P (re-delivered
   after a crash, or staged by another process reading the same log);
3. INSERTs each remaining transaction with changes as one outbox row,
   the payload exactly as session capture writes it
   (:meth:`oslo_publish.outbox.OutboxSink.stage`), ``txid`` = 32 hex
   digits derived from the stream and position (like session capture's),
   ``log_position`` = its position, ``xid`` = the database transaction
   id;
4. sets the position to the batch's last one and commits.

On PostgreSQL with psycopg2 the same transaction takes two round trips
(:mod:`.staging_pg`) and, when the stream lock is free, also numbers the
entries (the relay then only publishes them); when, in addition, no
staged entry waits for the relay, the batch is published straight from
the log and only ``last_seq`` and the position are recorded
(:mod:`.direct`). On MariaDB with PyMySQL the batch is two round trips
too (:mod:`.staging_my`, publishing straight from the log the same way
on 10.6+). With another driver, on MariaDB (10.6+) and MySQL (8.0.1+)
the generic transaction does the same after step 1: it locks the stream
row ``FOR UPDATE SKIP LOCKED`` and, when it got it and nothing staged
waits, publishes instead of step 3 and moves ``last_seq`` with the
position.

Only after the commit does it :meth:`~.base.LogReader.confirm` the
position (the database may then discard the log before it) and wake the
relay, which numbers and publishes the entries as for session capture.
A process killed at any point therefore loses nothing and stages nothing
twice: the log is kept until the staging commit, and what was committed
is never staged again. Entries are staged in commit order, so the relay's
id order is commit order.

When the reader reports its log lost (:class:`~.base.LogLost`, e.g. a
PostgreSQL slot invalidated past ``max_slot_wal_keep_size``), the stager
recreates it (:meth:`~.base.LogReader.setup`) and gives the stream a new
epoch: consumers resynchronise (counted, cause ``epoch``) instead of
missing what the lost log held.
"""

import datetime
import json
import threading
import time
import uuid

from oslo_log import log
import sqlalchemy as sa

from oslo_publish import exceptions
from oslo_publish import outbox
from oslo_publish.logcapture import base
from oslo_publish.logcapture import direct
from oslo_publish.logcapture import pgoutput
from oslo_publish.logcapture import staging_my
from oslo_publish.logcapture import staging_pg
from oslo_publish.relay import numbering

LOG = log.getLogger(__name__)

_OUTBOX = outbox.outbox
_POSITIONS = outbox.log_positions
_TXID_NAMESPACE = uuid.UUID('6f1d2c3b-8a4e-5b7c-9d0e-1f2a3b4c5d6e')


def txid(stream, position):
    """The wire ``txid`` of a staged transaction (32 hex digits).

    Made from the stream and the position, so a restaged transaction
    keeps it.
    """
    return uuid.uuid5(_TXID_NAMESPACE, '%s/%s' % (stream, position)).hex


def wait_staged(engine, stream, position, timeout):
    """Wait until the stream's staged position reaches ``position``.

    For :meth:`~.base.LogReader.snapshot_cut`, which may run in another
    process than the stager: the staged position is in the database.

    :raises SnapshotError: not reached within ``timeout`` seconds.
    """
    query = sa.select(_POSITIONS.c.position).where(
        _POSITIONS.c.stream == stream)
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        with engine.connect() as conn:
            staged = conn.execute(query).scalar()
        if staged and staged >= position:
            return staged
        if time.monotonic() > deadline:
            raise exceptions.SnapshotError(
                'the log reader of stream %s did not reach %s within %ss '
                '(is its relay running?)' % (stream, position, timeout))
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def payload(changes, tables):
    """The outbox payload of a transaction (as session capture's)."""
    return json.dumps({'changes': changes, 'tables': tables},
                      separators=(',', ':'), allow_nan=False)


class Stager(object):
    """Stages a reader's transactions into the outbox (a thread).

    :param engine: the host database (outbox and positions).
    :param stream: the stream name.
    :param reader: a :class:`~.base.LogReader` (not started).
    :param wake: called after each staging commit (the relay's wake), or
        None.
    :param relay: the stream's :class:`~oslo_publish.relay.Relay`, used
        to renew the epoch when the log is lost (None: not renewed).
    :param read_timeout: seconds one :meth:`LogReader.read` waits.
    """

    #: Seconds between two readings of the log retained for the reader.
    lag_interval = 5.0

    def __init__(self, engine, stream, reader, wake=None, relay=None,
                 read_timeout=0.5, metrics=None):
        self._engine = engine
        self._stream = stream
        self.reader = reader
        self._wake = wake
        self._relay = relay
        self._timeout = read_timeout
        self._metrics = metrics if metrics is not None else getattr(
            relay, 'metrics', None)
        self._lag_due = 0.0
        #: Bytes of log retained for the reader at the last reading.
        self.retained = None
        self._stopping = threading.Event()
        self._thread = None
        #: Set once the reader streams (tests, tools).
        self.streaming = threading.Event()
        #: The last position staged by this process (or read at start).
        self.position = None
        self._lock_row = (
            sa.select(_POSITIONS.c.position)
            .where(_POSITIONS.c.stream == stream).with_for_update())
        self._set_position = (
            _POSITIONS.update().where(_POSITIONS.c.stream == stream)
            .values(position=sa.bindparam('position'),
                    updated_at=sa.bindparam('now')))
        #: Two round trips per batch where possible (:mod:`.staging_pg`,
        #: :mod:`.staging_my`).
        self._batch = None
        self._skip_locked = None
        if hasattr(reader, 'visible_in'):
            for module in (staging_pg, staging_my):
                if module.usable(engine):
                    self._batch = module.Batch(engine, stream)
        #: Publishing straight from the log (:mod:`.direct`): on the
        #: two-round-trip batch (PostgreSQL; MariaDB with PyMySQL) or the
        #: generic step on MariaDB/MySQL (with ``SKIP LOCKED``, checked
        #: at the first batch), with the stream's relay at hand.
        self.direct = None
        if direct.usable(relay) and (
                self._batch is not None or
                engine.dialect.name in ('mysql', 'mariadb')):
            self.direct = direct.Direct(relay, stream)

    # ------------------------------------------------------------ thread

    def start(self):
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name='oslo-publish-stager-%s' % self._stream,
            daemon=True)
        self._thread.start()

    def stop(self, timeout=30.0):
        thread, self._thread = self._thread, None
        self._stopping.set()
        if thread is not None:
            thread.join(timeout)
        self.reader.close()
        if self._batch is not None and (thread is None or
                                        not thread.is_alive()):
            self._batch.close()

    def _run(self):
        failures = 0
        while not self._stopping.is_set():
            try:
                self.reader.start(self.staged_position())
                self.streaming.set()
                failures = 0
                while not self._stopping.is_set():
                    self.stage(self.reader.read(self._timeout))
                    self._measure_lag()
            except base.LogLost as exc:
                LOG.error('Stream %(stream)s: the database log is lost '
                          '(%(exc)s); starting a new epoch, consumers '
                          'will resynchronise', {'stream': self._stream,
                                                 'exc': exc})
                try:
                    self.recover_lost_log()
                except Exception as exc2:  # noqa: retried below
                    LOG.warning('Recreating the log of stream %s failed: '
                                '%s', self._stream, exc2)
                    failures += 1
            except Exception as exc:  # noqa: broad - keep it alive
                failures += 1
                level = LOG.debug if failures > 1 else LOG.warning
                level('Log reader of stream %(stream)s failed, retrying: '
                      '%(exc)s', {'stream': self._stream, 'exc': exc})
            self.streaming.clear()
            self.reader.close()
            if self._batch is not None:
                self._batch.abort()
            if failures:
                self._stopping.wait(numbering.backoff(failures, 5.0))

    def _measure_lag(self):
        """Every ``lag_interval`` seconds: the log retained, as a gauge."""
        now = time.monotonic()
        if now < self._lag_due:
            return
        self._lag_due = now + self.lag_interval
        try:
            retained = self.reader.lag()
        except Exception as exc:  # noqa: monitoring must not stop staging
            LOG.debug('Reading the retained log of stream %s failed: %s',
                      self._stream, exc)
            return
        self.retained = retained
        if retained is not None and self._metrics is not None:
            self._metrics.log_retained.labels(self._stream).set(retained)

    # ------------------------------------------------------------- steps

    def staged_position(self):
        """The stream's staged position (the row is made if missing)."""
        with self._engine.begin() as conn:
            got = conn.execute(
                sa.select(_POSITIONS.c.position)
                .where(_POSITIONS.c.stream == self._stream)).first()
            if got is None:
                try:
                    with conn.begin_nested():
                        conn.execute(_POSITIONS.insert().values(
                            stream=self._stream, position='',
                            updated_at=numbering.utcnow()))
                except sa.exc.IntegrityError:
                    pass
                got = ('',)
        self.position = got[0] or None
        return self.position

    def stage(self, transactions):
        """Stage ``transactions`` (commit order) in one DB transaction.

        :returns: the number of outbox entries written, or of
            transactions published straight from the log
            (:mod:`.direct`).
        """
        if not transactions:
            return 0
        if self._batch is not None:
            return self._stage_batch(transactions)
        recorded = None
        with self._engine.begin() as conn:
            staged = conn.execute(self._lock_row).scalar() or ''
            last, fresh = self._fresh(transactions, staged)
            if last is None:
                # All re-delivered: the log may still move on.
                self.reader.confirm(staged) if staged else None
                return 0
            if fresh:
                wait = getattr(self.reader, 'wait_visible', None)
                if wait is not None:
                    wait(conn, transactions)
            now = numbering.utcnow()
            if fresh and self._direct_here(conn):
                recorded = self._publish_direct(conn, fresh, staged, now)
            rows = [] if recorded else self._rows(fresh)
            if rows:
                conn.execute(_OUTBOX.insert(), rows)
            conn.execute(self._set_position,
                         {'position': last, 'now': now})
        if recorded:
            self.direct.recorded(*recorded)
            return self._staged(last, 0, len(fresh))
        return self._staged(last, len(rows))

    def _direct_here(self, conn):
        """True when the generic step may publish straight from the log."""
        if self.direct is None:
            return False
        if self._skip_locked is None:
            self._skip_locked = direct.skip_locked(conn.dialect)
            if not self._skip_locked:
                LOG.info('Stream %s: the server has no FOR UPDATE SKIP '
                         'LOCKED; every batch is staged in the outbox',
                         self._stream)
        return self._skip_locked

    def _publish_direct(self, conn, fresh, staged, now):
        """The generic step's :mod:`.direct` attempt, in ``conn``.

        :returns: ``(epoch, last_seq)`` to remember after the commit when
            ``fresh`` was published and ``last_seq`` moved in ``conn``;
            None: stage them instead (stream lock held elsewhere,
            entries pending, or the broker did not confirm).
        """
        locked = direct.lock_stream(conn, self._stream, staged)
        if not self.direct.eligible(locked):
            return None
        seq, failure = self.direct.publish(fresh, locked.last_seq,
                                           locked.epoch)
        if failure is not None:
            # Staged below, in the same transaction: the relay numbers
            # them from the same last_seq, in the same order.
            LOG.debug('Stream %(stream)s: publishing from the log '
                      'failed (%(exc)s); staging the batch',
                      {'stream': self._stream, 'exc': failure})
            return None
        direct.record_last_seq(conn, self._stream, seq, now)
        return locked.epoch, seq

    def _stage_batch(self, transactions, timeout=60.0):
        """:meth:`stage` in two round trips (:mod:`.staging_pg`).

        When the stream lock came free with the batch's locks and
        nothing staged waits for the relay, the transactions are
        published straight from the log instead (:mod:`.direct`).
        Anything raised between the two round trips rolls the
        transaction back (and drops the connection): no lock stays held.
        """
        batch = self._batch
        locked = batch.begin()
        try:
            last, fresh = self._fresh(transactions, locked.position)
            if last is None:
                batch.rollback()
                if locked.position:
                    self.reader.confirm(locked.position)
                return 0
            if fresh:
                # The visibility wait of the reader's wait_visible(),
                # first on the snapshot the lock's statement took.
                snapshots = [locked.snapshot]
                base.wait_until(
                    lambda: self.reader.visible_in(
                        fresh,
                        snapshots.pop() if snapshots else batch.snapshot()),
                    timeout, lambda: pgoutput.invisible(fresh))
            now = numbering.utcnow()
            direct = self.direct
            if fresh and direct is not None and direct.eligible(locked):
                seq, failure = direct.publish(fresh, locked.last_seq,
                                              locked.epoch)
                if failure is None:
                    batch.record(last, now, seq)
                    direct.recorded(locked.epoch, seq)
                    return self._staged(last, 0, len(fresh))
                # Not confirmed: staged (numbered as published) for the
                # relay's retries, the outbox holding the backlog.
                LOG.debug('Stream %(stream)s: publishing from the log '
                          'failed (%(exc)s); staging the batch',
                          {'stream': self._stream, 'exc': failure})
            rows = self._rows(fresh)
            batch.commit(rows, last, now, locked.last_seq)
        except BaseException:
            batch.abort()
            raise
        return self._staged(last, len(rows))

    @staticmethod
    def _fresh(transactions, staged):
        """``(last position, transactions with changes)`` after ``staged``.

        ``last`` is None when every transaction was staged before.
        """
        fresh = []
        last = None
        for tx in transactions:
            # An empty transaction only moves the staged position
            # (a watermark mark, a skipped transaction).
            if tx.position <= staged or \
                    (last is not None and tx.position <= last):
                continue
            last = tx.position
            if tx.changes:
                fresh.append(tx)
        return last, fresh

    def _rows(self, fresh):
        """The outbox rows of ``fresh`` transactions."""
        rows = []
        for tx in fresh:
            committed_at = tx.committed_at.astimezone(
                datetime.timezone.utc).replace(tzinfo=None)
            rows.append({'stream': self._stream,
                         'txid': txid(self._stream, tx.position),
                         'log_position': tx.position,
                         'committed_at': committed_at,
                         'payload': payload(tx.changes, tx.tables),
                         'xid': tx.xid})
        return rows

    def _staged(self, last, written, published=0):
        """After the staging commit: confirm ``last``, wake the relay.

        :returns: the transactions written or published.
        """
        self.position = last
        self.reader.confirm(last)
        if written and self._wake is not None:
            self._wake()
        return written + published

    def recover_lost_log(self):
        """Recreate the reader's log and start a new epoch."""
        reader = self.reader
        type(reader).reset_log(reader.conf, self._engine, reader.tables,
                               self._stream)
        with self._engine.begin() as conn:
            conn.execute(self._set_position,
                         {'position': '', 'now': numbering.utcnow()})
        if self._relay is not None:
            with self._relay.holding() as held:
                with held.marking() as conn:
                    held.epoch = self._relay.stream_lock.renew_epoch(conn)
