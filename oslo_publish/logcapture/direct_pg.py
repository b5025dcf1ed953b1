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

"""Publishing straight from the PostgreSQL log (no outbox row).

In the steady state the staging batch (:mod:`.staging_pg`) holds, after
its first round trip, the lock of the stream's positions row AND of its
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
   (:meth:`.staging_pg.Batch.record`, one round trip with ``COMMIT``):
   the durable map "everything up to position P is seq <= N";
4. only then is the slot confirmed.

What is durable where: the log (the slot) until step 4; the pair
(``last_seq``, position) in the host database from step 3. A process
killed anywhere restarts the slot after the recorded position, and the
transactions after it are numbered again from the recorded ``last_seq``,
in the same commit order, to the same numbers and the same content: a
consumer sees at most a repeated message, never a number reused for
another transaction.

Any other batch takes the outbox path (:mod:`.staging`): the stream lock
was held (a relay cycle, the snapshot server's watermark: the watermark
protocol is unchanged), staged entries still wait for the relay (they
precede this batch in the stream), or the broker did not confirm (the
batch is then staged, numbered to the numbers it was published with,
and the relay retries it: a broker outage fills the outbox as before,
not the server's WAL). With ``outbox_retention`` > 0 every batch takes
the outbox path, which keeps the copies the option asks for.
"""

import datetime

from oslo_publish.logcapture import staging

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
