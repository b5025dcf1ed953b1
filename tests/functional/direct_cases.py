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

"""Direct publishing (``capture = logical``) cases shared by the databases.

:class:`DirectCases` holds every case that applies to PostgreSQL
(pgoutput) and MariaDB (binlog) alike; each database's test class mixes
it into its private-server case, names its :class:`Dialect` (the
upsert clause, the bulk insert, the snapshot) and fills the small hooks
(how the outbox counter is read, how a stager is built, killed before
its record and restarted). Every publisher here keeps every
version of every seq it was given, so a test can tell a repeated
message (allowed) from a number reused for other content (a bug).
"""

import collections
import json
import os
import signal
import subprocess
import sys
import threading

import fixtures
import sqlalchemy as sa

from oslo_publish import exceptions
from oslo_publish.logcapture import staging
from oslo_publish import outbox
from oslo_publish import wire
from tests import base
from tests.functional import test_logical_capture as logical
from tests.functional import watermark


class Publisher(logical.RecordingPublisher):
    """Records every version of each seq; refuses while ``down`` is set."""

    def __init__(self):
        super().__init__()
        self.versions = {}
        self.down = threading.Event()

    def publish(self, event_type, payload):
        if self.down.is_set():
            raise exceptions.DeliveryError('broker down (test)')
        super().publish(event_type, payload)
        if event_type == wire.EVENT_DELTA:
            with self.lock:
                for tx in payload['transactions']:
                    self.versions.setdefault(tx['seq'], set()).add(
                        json.dumps(tx, sort_keys=True))

    def reused(self):
        """Seqs published with more than one content (must be none)."""
        with self.lock:
            return sorted(s for s, v in self.versions.items() if len(v) > 1)


class Dialect(collections.namedtuple('Dialect', (
        'on_duplicate', 'bulk_insert', 'open_snapshot', 'writers',
        'snapshots'))):
    """The SQL and settings of the cases that differ by database.

    ``on_duplicate``: the clause making an insert of an existing key
    ``n = n + 1``; ``bulk_insert``: 20000 rows, ids 1..20000, in one
    statement; ``open_snapshot``: one of :mod:`.watermark`'s openers;
    ``writers``, ``snapshots``: the concurrent writers case's threads
    and snapshots.
    """


POSTGRESQL = Dialect(
    on_duplicate='ON CONFLICT (id) DO UPDATE SET n = items.n + 1',
    bulk_insert=("INSERT INTO items SELECT g, repeat('x', 200), 0, g, 's' "
                 'FROM generate_series(1, 20000) g'),
    open_snapshot=watermark.repeatable_read, writers=4, snapshots=5)

MARIADB = Dialect(
    on_duplicate='ON DUPLICATE KEY UPDATE n = n + 1',
    bulk_insert=("INSERT INTO items SELECT seq, REPEAT('x', 20), 0, seq, "
                 "'s' FROM seq_1_to_20000"),
    open_snapshot=watermark.consistent_snapshot, writers=3, snapshots=4)


class DirectCases(object):
    """The shared cases; mixed into a private-server ``TestCase``.

    The class mixing it in provides ``engine``, ``url``, ``conf``,
    ``stream``, ``tables``, ``catch_up()``, ``settle()``, ``table()``,
    ``start_position`` (the position recorded before any change),
    ``DIALECT`` and the hooks below.
    """

    #: The backend's :class:`Dialect`.
    DIALECT = None

    def outbox_ids_used(self):
        """True once any outbox entry was ever written (its counter)."""
        raise NotImplementedError

    def make_reader(self):
        raise NotImplementedError

    def kill_before_record(self, stager, killed):
        """Make ``stager`` call ``killed`` instead of recording last_seq.

        Returns the function undoing it (for the next process).
        """
        raise NotImplementedError

    def restart_unconfirmed(self, start):
        """A stager reading again what was recorded but never confirmed.

        ``start`` is the position recorded before those transactions.
        """
        raise NotImplementedError

    def assert_log_confirmed(self, position):
        """The log itself was confirmed up to ``position`` (if it can be)."""

    # Helpers.

    def start_relay(self, run_relay=True, direct=True):
        """Relay and stager; ``direct``: the stager publishes straight."""
        logical.start_staging(self, Publisher(), run_relay=run_relay,
                              stream_row=direct)
        self.assertEqual(direct, self.stager.direct is not None)
        self.assertTrue(self.stager.streaming.wait(30))

    def insert(self, *keys):
        with self.engine.begin() as conn:
            for key in keys:
                conn.exec_driver_sql(
                    "INSERT INTO items VALUES (%(k)s, 'n', 0, 1.5, 's')",
                    {'k': key})

    def recorded(self):
        with self.engine.connect() as conn:
            last_seq = conn.execute(sa.select(outbox.streams.c.last_seq)
                                    .where(outbox.streams.c.stream ==
                                           self.stream)).scalar()
            position = conn.execute(
                sa.select(outbox.log_positions.c.position).where(
                    outbox.log_positions.c.stream == self.stream)).scalar()
        return last_seq, position

    def assert_mirror(self):
        rows, seqs = self.publisher.replay()
        self.assertEqual(self.table(), rows)
        self.assertEqual(list(range(1, len(seqs) + 1)), seqs)
        self.assertEqual([], self.publisher.reused())
        return seqs

    def _stager(self, after=None):
        reader = self.make_reader()
        self.addCleanup(reader.close)
        stager = staging.Stager(self.engine, self.stream, reader,
                                relay=self.relay)
        self.addCleanup(stager.stop)
        staged = stager.staged_position()
        reader.start(staged if after is None else after)
        return stager

    def _read(self, stager, count):
        got = []
        base.wait_for(lambda: got.extend(stager.reader.read(0.2)) or
                      len([t for t in got if t.changes]) >= count, 30)
        return got

    # Steady state.

    def test_steady_state_writes_no_outbox_entry(self):
        """No relay thread at all: everything is published from the log."""
        self.start_relay(run_relay=False)
        for n in range(1, 21):
            self.insert(n)
        self.catch_up()
        self.assertEqual(20, len(self.assert_mirror()))
        self.assertFalse(self.outbox_ids_used())
        self.assertEqual(0, self.stager.direct.staged)
        self.assertGreater(self.stager.direct.published, 0)
        last_seq, position = self.recorded()
        self.assertEqual(20, last_seq)
        self.assertEqual(self.stager.position, position)
        self.assert_log_confirmed(position)

    def test_outbox_retention_keeps_the_outbox_path(self):
        """Retained copies asked for: every batch is staged."""
        self.conf.set_override('outbox_retention', 60.0, 'oslo_publish')
        self.start_relay(direct=False)
        self.insert(1)
        self.insert(2)
        self.settle()
        self.assertEqual(2, len(self.assert_mirror()))
        self.assertTrue(self.outbox_ids_used())
        with self.engine.connect() as conn:
            self.assertEqual(2, conn.execute(
                sa.select(sa.func.count()).select_from(outbox.outbox)
                .where(outbox.outbox.c.published_at.isnot(None))).scalar())

    def test_concurrent_writers_and_snapshots_meet_the_watermark(self):
        """Mirror exact; snapshots while streaming fall back and rejoin."""
        self.start_relay()

        def write(conn, rng):
            key = rng.randint(1, 40)
            if rng.random() < 0.7:
                conn.exec_driver_sql(
                    "INSERT INTO items VALUES (%(k)s, 'w', 0, 1.5, 's') " +
                    self.DIALECT.on_duplicate, {'k': key})
            else:
                conn.exec_driver_sql('DELETE FROM items WHERE id = %(k)s',
                                     {'k': key})

        dialect = self.DIALECT
        watermark.check_under_writers(
            self, write, dialect.open_snapshot, writers=dialect.writers,
            rounds=dialect.snapshots, timeout=60)
        self.settle()
        self.assert_mirror()
        self.assertGreater(self.stager.direct.published, 0)
        # Back to straight publishing after the last snapshot.
        published = self.stager.direct.published
        self.insert(1000)
        self.settle()
        self.assertGreater(self.stager.direct.published, published)
        self.assert_mirror()

    def test_broker_outage_stages_then_publishes_straight_again(self):
        """No confirm: staged, numbered, nothing lost; then direct again."""
        self.start_relay()
        self.insert(1)
        self.settle()
        self.assertEqual(1, self.stager.direct.published)
        self.publisher.down.set()
        for n in range(2, 7):
            self.insert(n)
        base.wait_for(self.outbox_ids_used, 30, message='nothing staged')
        self.assertGreater(self.stager.direct.staged, 0)
        self.publisher.down.clear()
        self.settle()
        self.assertEqual(6, len(self.assert_mirror()))
        published = self.stager.direct.published
        self.insert(7)
        self.settle()
        self.assertGreater(self.stager.direct.published, published)
        self.assertEqual(7, len(self.assert_mirror()))
        self.assertEqual(7, self.recorded()[0])

    def test_restored_database_stages_and_starts_a_new_epoch(self):
        """``last_seq`` back in the same epoch: no number given twice."""
        self.start_relay()
        self.insert(1)
        self.insert(2)
        self.settle()
        self.assertEqual(0, self.stager.direct.staged)
        with self.engine.begin() as conn:
            conn.execute(outbox.streams.update()
                         .where(outbox.streams.c.stream == self.stream)
                         .values(last_seq=1))
        self.insert(3)
        self.settle()
        self.assertGreater(self.stager.direct.staged, 0)
        epochs = {m.get('epoch') for m in self.publisher.messages}
        self.assertEqual(2, len(epochs), epochs)

    # Crashes.

    def test_crash_between_publish_and_record_renumbers_identically(self):
        self.start_relay(run_relay=False)
        self.stager.stop()
        start = self.recorded()
        self.assertEqual((0, self.start_position), start)
        self.insert(1, 2)
        self.insert(3)
        self.insert(4)
        stager = self._stager()
        got = self._read(stager, 3)

        def killed(*args):
            raise RuntimeError('killed before recording (test)')
        restore = self.kill_before_record(stager, killed)
        self.assertRaises(RuntimeError, stager.stage, got)
        self.assertEqual([1, 2, 3], sorted(self.publisher.transactions))
        first = dict(self.publisher.transactions)
        self.assertEqual(start, self.recorded())
        stager.stop()
        restore()
        # The next process: from the recorded position, the same numbers.
        stager = self._stager()
        self.assertEqual(3, stager.stage(self._read(stager, 3)))
        self.assertEqual(3, self.recorded()[0])
        self.assert_mirror()
        self.assertEqual(3, len(self.publisher.versions))
        self.assertEqual(first, self.publisher.transactions)

    def test_crash_between_record_and_confirm_publishes_nothing(self):
        self.start_relay(run_relay=False)
        self.stager.stop()
        start = self.recorded()[1]
        self.insert(1)
        self.insert(2)
        stager = self._stager()
        got = self._read(stager, 2)
        stager.reader.confirm = lambda position: None   # dies first
        self.assertEqual(2, stager.stage(got))
        messages = len(self.publisher.messages)
        stager.stop()
        stager = self.restart_unconfirmed(start)
        again = self._read(stager, 2)
        self.assertEqual([t.position for t in got if t.changes],
                         [t.position for t in again if t.changes])
        self.assertEqual(0, stager.stage(again))
        self.assertEqual(messages, len(self.publisher.messages))
        self.assertEqual(2, self.recorded()[0])
        self.assert_mirror()

    def test_sigkill_between_publish_and_record_of_a_large_transaction(self):
        """Killed after the broker confirmed a 20000-row transaction."""
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'published.jsonl')
        with self.engine.begin() as conn:
            conn.exec_driver_sql(self.DIALECT.bulk_insert)
        with self.engine.begin() as conn:
            conn.exec_driver_sql('UPDATE items SET n = n + 1 WHERE id < 5')
        env = dict(os.environ, PYTHONPATH=logical.ROOT)
        proc = subprocess.Popen(
            [sys.executable, '-m', 'tests.functional.logical_direct_relay',
             self.url, self.stream, path], cwd=logical.ROOT, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.addCleanup(proc.wait)
        self.addCleanup(logical._kill, proc)
        self.assertEqual('streaming', proc.stdout.readline().strip())
        self.assertEqual('published', proc.stdout.readline().strip())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with open(path) as f:
            before = [json.loads(line) for line in f]
        self.assertEqual(1, before[0]['seq'])
        self.assertEqual(20000, len(before[0]['changes']))
        self.assertEqual((0, self.start_position), self.recorded())
        # The next relay: same numbers, same content, nothing more.
        self.start_relay()
        self.settle()
        self.assertEqual(2, len(self.assert_mirror()))
        for tx in before:
            self.assertEqual(json.dumps(tx, sort_keys=True),
                             json.dumps(self.publisher.transactions[tx['seq']],
                                        sort_keys=True))
        self.assertEqual(2, self.recorded()[0])
