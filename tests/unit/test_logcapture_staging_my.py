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

"""The MariaDB staging batch: its round trips and what it reads back."""

import datetime
from unittest import mock

import fixtures
import sqlalchemy as sa

from oslo_publish.logcapture import staging_my
from tests import base

_NOW = datetime.datetime(2026, 1, 2, 3, 4, 5)


class FakeCursor(object):
    """Records each ``execute`` (one round trip) and plays result sets."""

    def __init__(self, results=()):
        self.sent = []
        self.many = []
        self._results = list(results)
        self._current = []

    def execute(self, sql, args=None):
        self.sent.append((sql, args))
        sets = self._results.pop(0) if self._results else [[]]
        self._current = list(sets)
        return 0

    def executemany(self, sql, rows):
        self.many.append((sql, list(rows)))

    def fetchall(self):
        return self._current[0] if self._current else ()

    def nextset(self):
        if len(self._current) <= 1:
            return None
        self._current.pop(0)
        return True

    def close(self):
        pass


def _engine(version=(10, 11, 6)):
    engine = sa.create_engine('mysql+pymysql://u@h/db')
    engine.dialect.server_version_info = version
    engine.dialect.is_mariadb = True
    return engine


class TestBatch(base.TestCase):

    def _batch(self, cursor, version=(10, 11, 6)):
        batch = staging_my.Batch(_engine(version), 's1')
        conn = mock.Mock()
        conn.cursor.return_value = cursor
        self.useFixture(fixtures.MonkeyPatch(
            'oslo_publish.logcapture.staging_my._connect',
            lambda engine: conn))
        return batch, conn

    def test_usable_on_pymysql_only(self):
        self.assertTrue(staging_my.usable(_engine()))
        self.assertFalse(staging_my.usable(
            sa.create_engine('postgresql+psycopg2://u@h/db')))
        self.assertFalse(staging_my.usable(
            sa.create_engine('sqlite://')))

    def test_begin_is_one_round_trip_with_snapshot_and_locks(self):
        cursor = FakeCursor([[
            [],                                   # START TRANSACTION
            [('0000000000000042 0-1',)],          # the positions row
            [('Binlog_snapshot_file', '/d/binlog.000003'),
             ('Binlog_snapshot_position', '1234')],
            [(41, 'e1')],                          # the stream row
            [(0,)],                                # pending
        ]])
        batch, _ = self._batch(cursor)
        locked = batch.begin()
        self.assertEqual(1, len(cursor.sent))
        sql = cursor.sent[0][0]
        self.assertTrue(sql.startswith(
            'START TRANSACTION WITH CONSISTENT SNAPSHOT; '))
        self.assertIn('FOR UPDATE SKIP LOCKED', sql)
        self.assertEqual('0000000000000042 0-1', locked.position)
        self.assertEqual(('/d/binlog', 3, 1234), locked.snapshot)
        self.assertEqual((41, 'e1', False),
                         (locked.last_seq, locked.epoch, locked.pending))
        self.assertTrue(locked.stream_locked)

    def test_begin_with_the_stream_row_locked_elsewhere(self):
        cursor = FakeCursor([[[], [('',)], [], [], [(1,)]]])
        batch, _ = self._batch(cursor)
        locked = batch.begin()
        self.assertEqual(('', None), (locked.position, locked.snapshot))
        self.assertFalse(locked.stream_locked)

    def test_begin_without_skip_locked_does_not_lock_the_stream(self):
        cursor = FakeCursor([[[], [('p',)], []]])
        batch, _ = self._batch(cursor, version=(10, 5, 1))
        locked = batch.begin()
        self.assertNotIn('SKIP LOCKED', cursor.sent[0][0])
        self.assertFalse(locked.stream_locked)

    def test_missing_positions_row_rolls_back(self):
        cursor = FakeCursor([[[], [], []]])
        batch, conn = self._batch(cursor)
        self.assertRaises(LookupError, batch.begin)
        conn.rollback.assert_called_once_with()
        conn.close.assert_called_once_with()

    def test_record_is_one_round_trip_ending_with_commit(self):
        cursor = FakeCursor()
        batch, _ = self._batch(cursor)
        batch.record('p9', _NOW, 17)
        self.assertEqual(1, len(cursor.sent))
        sql, args = cursor.sent[0]
        self.assertEqual(2, sql.count(';'))   # UPDATE; UPDATE; COMMIT
        self.assertTrue(sql.endswith('COMMIT'))
        self.assertEqual((17, _NOW, 's1', 'p9', _NOW, 's1'), args)

    def _rows(self, count, size):
        return [{'stream': 's1', 'txid': 't%d' % n, 'log_position': 'p%d' % n,
                 'committed_at': _NOW, 'payload': 'x' * size, 'xid': n}
                for n in range(count)]

    def test_commit_inserts_in_the_same_round_trip(self):
        cursor = FakeCursor()
        batch, _ = self._batch(cursor)
        batch.commit(self._rows(2, 10), 'p1', _NOW)
        self.assertEqual(([], 1), (cursor.many, len(cursor.sent)))
        sql, args = cursor.sent[0]
        self.assertTrue(sql.startswith('INSERT INTO '))
        self.assertTrue(sql.endswith('COMMIT'))
        self.assertEqual(2 * 6 + 3, len(args))

    def test_large_commit_sends_the_insert_on_its_own(self):
        cursor = FakeCursor()
        batch, _ = self._batch(cursor)
        rows = self._rows(3, staging_my.INLINE_BYTES // 2)
        batch.commit(rows, 'p2', _NOW)
        self.assertEqual(1, len(cursor.many))
        self.assertEqual(3, len(cursor.many[0][1]))
        sql, args = cursor.sent[0]
        self.assertTrue(sql.startswith('UPDATE '))
        self.assertEqual(('p2', _NOW, 's1'), tuple(args))

    def test_a_failed_round_trip_drops_the_connection(self):
        cursor = FakeCursor()
        cursor.execute = mock.Mock(side_effect=OSError('broken'))
        batch, conn = self._batch(cursor)
        self.assertRaises(OSError, batch.record, 'p', _NOW, 1)
        conn.rollback.assert_called_once_with()
        conn.close.assert_called_once_with()
