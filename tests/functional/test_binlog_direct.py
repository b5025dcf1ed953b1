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

"""``capture = logical`` on MariaDB publishing straight from the binlog.

The private binlog server. Every publisher here keeps every version of
every seq it was given, so a test can tell a repeated message (allowed)
from a number reused for other content (a bug).
"""

import json
import os
import random
import signal
import subprocess
import sys
import threading

import fixtures
import sqlalchemy as sa

from oslo_publish import logcapture
from oslo_publish.logcapture import binlog
from oslo_publish.logcapture import direct
from oslo_publish.logcapture import staging
from oslo_publish import migration
from oslo_publish import outbox
from oslo_publish import relay as relay_mod
from oslo_publish import schema
from tests import base
from tests.functional import test_logical_capture as logical
from tests.functional import test_logical_direct
from tests import private_mariadb

DDL = ('CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(32) NOT NULL, '
       'n INT NOT NULL DEFAULT 0, price DECIMAL(10, 2), secret TEXT) '
       'ENGINE=InnoDB CHARSET=utf8mb4')


class _BinlogDirectCase(base.TestCase):

    def setUp(self):
        super().setUp()
        self.db = self.useFixture(private_mariadb.DatabaseFixture())
        self.engine = self.db.engine
        with self.engine.begin() as conn:
            conn.exec_driver_sql(DDL)
        migration.upgrade(self.engine)
        self.stream = base.unique_name('bd')
        self.conf = logical.make_conf(self.stream)
        self.tables = schema.resolve_tables(self.conf, engine=self.engine)
        binlog.Reader.setup(self.conf, self.engine, self.tables, self.stream)

    def start_relay(self, run_relay=True):
        self.publisher = test_logical_direct.Publisher()
        self.relay = relay_mod.Relay(self.conf, self.engine, self.stream,
                                     self.tables, self.publisher)
        with self.relay.holding():
            pass   # the stream row (the relay's first cycle makes it)
        if run_relay:
            self.relay.start()
            self.addCleanup(self.relay.stop)
        self.stager = logcapture.attach(self.conf, self.engine, self.tables,
                                        self.stream, self.relay)
        self.addCleanup(self.stager.stop)
        self.assertIsNotNone(self.stager.direct)
        self.assertTrue(self.stager.streaming.wait(30))

    def catch_up(self, timeout=60):
        binlog.catch_up(self.engine, self.stream, self.conf, self.tables,
                        timeout)

    def settle(self):
        self.catch_up()
        self.assertTrue(self.relay.wait_drained(60))

    def insert(self, *keys):
        with self.engine.begin() as conn:
            for key in keys:
                conn.exec_driver_sql(
                    "INSERT INTO items VALUES (%s, 'n', 0, 1.5, 's')",
                    (key,))

    def table(self, conn=None):
        return logical._LogicalCase.table(self, conn)

    def outbox_ids_used(self):
        """True once any outbox entry was ever written (its counter)."""
        with self.engine.connect() as conn:
            return (conn.exec_driver_sql(
                'SELECT AUTO_INCREMENT FROM information_schema.TABLES '
                'WHERE TABLE_SCHEMA = DATABASE() AND '
                "TABLE_NAME = 'oslo_publish_outbox'").scalar() or 1) > 1

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


class TestDirectMariaDB(_BinlogDirectCase):

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

    def test_outbox_retention_keeps_the_outbox_path(self):
        self.conf.set_override('outbox_retention', 60.0, 'oslo_publish')
        self.publisher = test_logical_direct.Publisher()
        self.relay = relay_mod.Relay(self.conf, self.engine, self.stream,
                                     self.tables, self.publisher)
        self.relay.start()
        self.addCleanup(self.relay.stop)
        self.stager = logcapture.attach(self.conf, self.engine, self.tables,
                                        self.stream, self.relay)
        self.addCleanup(self.stager.stop)
        self.assertIsNone(self.stager.direct)
        self.assertTrue(self.stager.streaming.wait(30))
        self.insert(1)
        self.insert(2)
        self.settle()
        self.assertEqual(2, len(self.assert_mirror()))
        self.assertTrue(self.outbox_ids_used())

    def test_broker_outage_stages_then_publishes_straight_again(self):
        """No confirm: staged, nothing lost; then direct again."""
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

    def test_concurrent_writers_and_snapshots_meet_the_watermark(self):
        """Mirror exact; snapshots while streaming fall back and rejoin."""
        self.start_relay()
        stop = threading.Event()
        errors = []

        def writer(seed):
            rng = random.Random(seed)
            while not stop.is_set():
                try:
                    with self.engine.begin() as conn:
                        key = rng.randint(1, 40)
                        if rng.random() < 0.7:
                            conn.exec_driver_sql(
                                "INSERT INTO items VALUES (%s, 'w', 0, "
                                "1.5, 's') ON DUPLICATE KEY UPDATE "
                                "n = n + 1", (key,))
                        else:
                            conn.exec_driver_sql(
                                'DELETE FROM items WHERE id = %s', (key,))
                except sa.exc.DBAPIError:
                    pass  # deadlock between writers: rolled back
                except Exception as exc:  # noqa: reported below
                    errors.append(exc)
                    return

        threads = [threading.Thread(target=writer, args=(n,), daemon=True)
                   for n in range(3)]
        for thread in threads:
            thread.start()
        try:
            for round_ in range(4):
                base.wait_for(lambda: len(self.publisher.transactions) >
                              (round_ + 1) * 20, 60)
                with self.engine.connect() as snap:
                    with self.relay.lock_for_snapshot() as mark:
                        snap.exec_driver_sql(
                            'START TRANSACTION WITH CONSISTENT SNAPSHOT')
                        n = mark.publish_visible(snap)
                    seen = self.table(snap)
                    snap.rollback()
                rows, _ = self.publisher.replay(n)
                self.assertEqual(seen, rows, 'watermark %d' % n)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        self.assertEqual([], errors)
        self.settle()
        self.assert_mirror()
        self.assertGreater(self.stager.direct.published, 0)
        published = self.stager.direct.published
        self.insert(1000)
        self.settle()
        self.assertGreater(self.stager.direct.published, published)
        self.assert_mirror()


class TestDirectCrashMariaDB(_BinlogDirectCase):

    def _stager(self, after=None):
        reader = binlog.Reader(self.conf, self.engine, self.tables,
                               self.stream)
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

    def test_crash_between_publish_and_record_renumbers_identically(self):
        self.start_relay(run_relay=False)
        self.stager.stop()
        start = self.recorded()
        self.insert(1, 2)
        self.insert(3)
        self.insert(4)
        stager = self._stager()
        got = self._read(stager, 3)

        def killed(*args):
            raise RuntimeError('killed before recording (test)')
        record = direct.record_last_seq
        self.useFixture(fixtures.MonkeyPatch(
            'oslo_publish.logcapture.direct.record_last_seq', killed))
        self.assertRaises(RuntimeError, stager.stage, got)
        self.assertEqual([1, 2, 3], sorted(self.publisher.transactions))
        first = dict(self.publisher.transactions)
        self.assertEqual(start, self.recorded())
        stager.stop()
        self.useFixture(fixtures.MonkeyPatch(
            'oslo_publish.logcapture.direct.record_last_seq', record))
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
        # The binlog still holds them: read again from before them.
        stager = self._stager(after=start)
        again = self._read(stager, 2)
        self.assertEqual([t.position for t in got if t.changes],
                         [t.position for t in again if t.changes])
        self.assertEqual(0, stager.stage(again))
        self.assertEqual(messages, len(self.publisher.messages))
        self.assertEqual(2, self.recorded()[0])
        self.assert_mirror()

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

    def test_sigkill_between_publish_and_record_of_a_large_transaction(self):
        """Killed after the broker confirmed a 20000-row transaction."""
        start = self.recorded()
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'published.jsonl')
        with self.engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO items SELECT seq, REPEAT('x', 20), 0, seq, 's' "
                'FROM seq_1_to_20000')
        with self.engine.begin() as conn:
            conn.exec_driver_sql('UPDATE items SET n = n + 1 WHERE id < 5')
        env = dict(os.environ, PYTHONPATH=logical.ROOT)
        proc = subprocess.Popen(
            [sys.executable, '-m', 'tests.functional.logical_direct_relay',
             self.db.url, self.stream, path], cwd=logical.ROOT, env=env,
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
        self.assertEqual((0, start[1]), self.recorded())
        # The next relay: same numbers, same content, nothing more.
        self.start_relay()
        self.settle()
        self.assertEqual(2, len(self.assert_mirror()))
        for tx in before:
            self.assertEqual(json.dumps(tx, sort_keys=True),
                             json.dumps(self.publisher.transactions[tx['seq']],
                                        sort_keys=True))
        self.assertEqual(2, self.recorded()[0])
