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
(:class:`StreamLock`, module ``lock``) from its first read to its last
write:

1. lock the stream (PostgreSQL, MariaDB/MySQL: ``SELECT ... FOR UPDATE``
   of its ``oslo_publish_streams`` row, which also gives ``last_seq`` and
   the stream's epoch, in a READ COMMITTED transaction L; SQLite: a
   process lock plus an ``flock`` on a lock file beside the database
   file), which serialises every relay of the stream in every process
   using the same database;
2. read, in ONE statement, the entries that have a ``seq`` but were
   never marked published (``seq > last_seq AND published_at IS NULL``,
   left by a relay that died or whose publish failed; seq order) and the
   next pending entries (``seq IS NULL``, id order), up to
   ``batch_size`` each;
3. if the batch has room: give pending entries the numbers after the
   highest one assigned so far, in ONE UPDATE, and COMMIT that (on a
   connection W of its own) before anything is published (on
   PostgreSQL, steps 2 and 3 are one statement on W that returns the
   batch: ``numbering.CLAIM_SQL``; with psycopg2, steps 1 to 3 are one
   round trip on L: the lock, the numbering committed in a transaction
   of its own, then L begun again with the lock and the batch read,
   ``StreamLock.claim_sql``);
4. publish the batch in seq order as delta messages (split at
   ``max_message_bytes``, module ``publishing``), republished entries
   with their recorded numbers and identical content, every message
   carrying the stream's epoch;
5. only for what the broker confirmed: delete the entries (or stamp
   ``published_at`` when ``outbox_retention`` keeps them) and move
   ``last_seq`` (in L, committed when the lock is released; on SQLite in
   a short ``BEGIN IMMEDIATE`` transaction).

That is two commits per cycle on connections the relay keeps (no pool
checkout per cycle). On PostgreSQL with psycopg2 it is two round trips:
the lock, numbering and batch read in one, the marking as one statement
sent with L's ``COMMIT`` in the other, and L commits without waiting for
its WAL flush (module ``lock``: a crash of the database may lose the
last markings, never a number; the entries are then published again
with their numbers). While busy (another cycle follows at once), the
marking and the ``COMMIT`` go at the head of the next cycle's round trip
instead (``StreamLock.defer``): one round trip per busy cycle.

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

Waking (module ``wake``): the relay thread runs a cycle as soon as
:meth:`Relay.wake` is called after a host commit (also from forked
workers: a pipe), or a PostgreSQL ``NOTIFY`` arrives (standalone relay),
and again at once while commits arrived during the previous cycle: it
sends at once when idle and batches only while busy, with no fixed
window. ``relay_poll_interval`` is a backstop poll. When nothing was
published for ``heartbeat_interval`` it publishes a heartbeat carrying
the stream's ``last_seq`` and epoch.

Epoch: the stream row carries an epoch, made with the row. A relay that
sees ``last_seq`` go backwards (the database was restored underneath
it) gives the stream a new epoch, so consumers resynchronise instead of
dropping new transactions as duplicates; a rebuilt database makes a new
row, hence a new epoch.

:meth:`Relay.lock_for_snapshot` implements the watermark protocol of the
snapshot server (DESIGN.md, module ``watermark``): with the stream lock
held, the caller opens its snapshot transaction S;
:meth:`Watermark.publish_visible` then republishes the numbered but
unmarked entries, publishes exactly the pending entries visible to S and
returns the watermark N, the last number published. Everything S sees
has ``seq <= N``; everything else is published later with ``seq > N``.
"""

from oslo_publish.relay.lock import _file_lock  # noqa: F401 (tests)
from oslo_publish.relay.lock import Held
from oslo_publish.relay.lock import lock_file_path
from oslo_publish.relay.lock import read_epoch
from oslo_publish.relay.lock import StreamLock
from oslo_publish.relay.loop import Relay
from oslo_publish.relay.numbering import as_utc
from oslo_publish.relay.numbering import BACKOFF_START
from oslo_publish.relay.numbering import backoff
from oslo_publish.relay.numbering import next_seq
from oslo_publish.relay.numbering import utcnow
from oslo_publish.relay.publishing import Entry
from oslo_publish.relay.publishing import publish_entries
from oslo_publish.relay.publishing import split_messages
from oslo_publish.relay.watermark import Watermark

__all__ = ['Relay', 'StreamLock', 'Held', 'Watermark', 'Entry',
           'read_epoch', 'lock_file_path', 'publish_entries',
           'split_messages', 'next_seq', 'backoff', 'as_utc', 'utcnow',
           'BACKOFF_START']
