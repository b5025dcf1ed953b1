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

"""Publishing straight from the database log (no outbox row).

In the steady state a staging batch holds, after its first round trip,
the lock of the stream's positions row AND of its
``oslo_publish_streams`` row (taken ``FOR UPDATE SKIP LOCKED``: never
waited for), and knows that no staged entry waits for the relay. Then
the decoded transactions need not be written to the outbox at all:

1. they are numbered in memory, in commit order, from the stream's
   ``last_seq`` (:func:`messages`: the numbers, ``txid``, commit time,
   changes and table headers the outbox path would give them, the
   payload byte for byte);
2. published (after the visibility wait every staging batch does) and
   the broker's confirms awaited;
3. ``last_seq`` and the log position are moved in ONE transaction
   (the staging transaction's commit): the durable map "everything up
   to position P is seq <= N";
4. only then is the reader's position confirmed.

PostgreSQL (:mod:`.staging_pg`): two round trips, the stream row read
through a ``LATERAL`` join with the positions row's lock. MariaDB and
MySQL (the generic :class:`~.staging.Stager` step, :func:`lock_stream`):
the stream row ``SELECT ... FOR UPDATE SKIP LOCKED`` (MariaDB 10.6,
MySQL 8.0) and the pending check, in the staging transaction, after the
positions row's lock; the position recorded is a GTID.

What is durable where: the log (the slot, the binlog) until step 4; the
pair (``last_seq``, position) in the host database from step 3. A
process killed anywhere restarts the log after the recorded position,
and the transactions after it are numbered again from the recorded
``last_seq``, in the same commit order, to the same numbers and the same
content: a consumer sees at most a repeated message, never a number
reused for another transaction.

Any other batch takes the outbox path (:mod:`.staging`): the stream lock
was held (a relay cycle, the snapshot server's watermark: the watermark
protocol is unchanged), staged entries still wait for the relay (they
precede this batch in the stream), or the broker did not confirm (the
batch is then staged and the relay numbers it, from the same
``last_seq`` and in the same order, to the numbers it was published
with: a broker outage fills the outbox as before, not the server's log).
With ``outbox_retention`` > 0 every batch takes the outbox path, which
keeps the copies the option asks for.
"""

import datetime

import sqlalchemy as sa

from oslo_publish import outbox
from oslo_publish.logcapture import staging
from oslo_publish.logcapture import staging_pg

_UTC = datetime.timezone.utc


def messages(stream, transactions, last_seq):
    """Number ``transactions`` after ``last_seq``, as the relay would.

    :param transactions: :class:`~.base.LogTransaction` with changes,
        in commit order (position order).
    :returns: ``[(seq, transaction dict, table headers)]`` for
        :func:`oslo_publish.relay.publishing.publish_entries`; the
        dictionaries are those the relay makes from the outbox entry
        staging writes (:meth:`Relay.publish_rows
        <oslo_publish.relay.Relay.publish_rows>`).
    """
    out = []
    seq = last_seq
    for tx in transactions:
        seq += 1
        # Microseconds, as the outbox's timestamp column keeps them.
        committed_at = tx.committed_at.astimezone(_UTC)
        out.append((seq, {'seq': seq,
                          'txid': staging.txid(stream, tx.position),
                          'committed_at': committed_at.isoformat(),
                          'changes': tx.changes}, tx.tables or {}))
    return out


def usable(relay):
    """True when ``relay`` can publish a batch straight from the log.

    Not when it keeps published entries (``outbox_retention`` > 0: the
    operator asked for a copy of every published transaction in the
    outbox, which only the outbox path writes).
    """
    return (callable(getattr(relay, 'publish_transactions', None))
            and not getattr(relay, 'retains_entries', False))


def skip_locked(dialect):
    """True when ``dialect``'s server has ``FOR UPDATE SKIP LOCKED``.

    For the generic staging step: MariaDB from 10.6, MySQL from 8.0.1
    (the version is known once the engine connected).
    """
    if dialect.name not in ('mysql', 'mariadb'):
        return False
    version = tuple(dialect.server_version_info or ())
    if getattr(dialect, 'is_mariadb', False):
        return version >= (10, 6)
    return version >= (8, 0, 1)


def lock_stream(conn, stream, position):
    """Lock the stream row if free, in the staging transaction ``conn``.

    For the generic staging step, which holds the positions row's lock
    already: ``SELECT last_seq, epoch ... FOR UPDATE SKIP LOCKED`` (never
    waits: a relay cycle or the snapshot server holding it makes the
    batch take the outbox path), then, with the row locked, whether a
    staged entry waits for the relay (unnumbered, or numbered after
    ``last_seq``). Two round trips.

    :returns: a :class:`~.staging_pg.Locked` (no snapshot).
    """
    streams = outbox.streams
    row = conn.execute(
        sa.select(streams.c.last_seq, streams.c.epoch)
        .where(streams.c.stream == stream)
        .with_for_update(skip_locked=True)).first()
    if row is None:
        return staging_pg.Locked(position, None, None, None, False)
    box = outbox.outbox
    mine = box.c.stream == stream
    pending = conn.execute(sa.select(sa.or_(
        sa.exists().where(mine, box.c.seq.is_(None)),
        sa.exists().where(mine, box.c.seq > row[0])))).scalar()
    return staging_pg.Locked(position, None, row[0], row[1], bool(pending))


def record_last_seq(conn, stream, last_seq, now):
    """Move the stream's ``last_seq`` in the staging transaction."""
    conn.execute(outbox.streams.update()
                 .where(outbox.streams.c.stream == stream)
                 .values(last_seq=last_seq, updated_at=now))


class Direct(object):
    """Publishes a staging batch's transactions without staging them.

    :param relay: the stream's :class:`~oslo_publish.relay.Relay` (its
        publisher, signing key, message size, metrics).
    :param stream: the stream name.
    """

    def __init__(self, relay, stream):
        self._relay = relay
        self._stream = stream
        #: Batches published straight / staged instead (tests, tools).
        self.published = 0
        self.staged = 0
        # (epoch, last_seq) as last recorded here.
        self._recorded = (None, 0)

    def eligible(self, locked):
        """True when the batch holding ``locked`` may skip the outbox.

        Not when ``last_seq`` went back in the same epoch (the database
        was restored underneath): the batch is staged and the relay,
        told the highest number it reached, starts a new epoch before
        numbering it, so no number is given to another transaction
        within an epoch.
        """
        epoch, seen = self._recorded
        if locked.stream_locked and not locked.pending and \
                locked.epoch is not None:
            if locked.epoch != epoch or locked.last_seq >= seen:
                return True
            self._relay.saw_last_seq(seen)
        self.staged += 1
        return False

    def publish(self, transactions, last_seq, epoch):
        """Number and publish; ``(new last_seq, DeliveryError or None)``.

        With a failure, nothing may be recorded (some messages may have
        been confirmed: they are republished with the same numbers).
        """
        entries = messages(self._stream, transactions, last_seq)
        _, failure = self._relay.publish_transactions(entries, epoch)
        if failure is not None:
            self.staged += 1
            return last_seq, failure
        self.published += 1
        return entries[-1][0], None

    def recorded(self, epoch, last_seq):
        """After the record's commit: remember it, set the gauge."""
        self._recorded = (epoch, last_seq)
        self._relay.saw_last_seq(last_seq)
        self._relay.metrics.last_seq.labels(self._stream).set(last_seq)
