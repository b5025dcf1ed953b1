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

"""The two-round-trip staging batch (:mod:`.staging_pg`) on PostgreSQL.

Its transaction against the generic one (same rows, same position), its
visibility wait, and a failing batch (nothing written, the connection
replaced). The end-to-end cases (SIGKILL, redelivery, watermark) are in
:mod:`tests.functional.test_logical_capture`, which runs this path.
"""

import datetime

import sqlalchemy as sa

from oslo_publish.logcapture import base as log_base
from oslo_publish.logcapture import staging
from oslo_publish.logcapture import staging_pg
from oslo_publish import migration
from oslo_publish import outbox
from tests import base
from tests import private_pg

_T0 = datetime.datetime(2026, 1, 2, 3, 4, 5, 678901,
                        tzinfo=datetime.timezone.utc)


class _Reader(object):
    """Records confirmations; visible after ``invisible`` checks."""

    def __init__(self, invisible=0):
        self.invisible = invisible
        self.checks = []
        self.confirmed = []

    def visible_in(self, transactions, snapshot):
        self.checks.append(snapshot)
        if self.invisible:
            self.invisible -= 1
            return False
        return True

    def confirm(self, position):
        self.confirmed.append(position)

    def close(self):
        pass


def _tx(n, changes=True):
    change = {'op': 'insert', 'table': 'items', 'key': [n],
              'after': {'id': n, 'name': 'v'}}
    return log_base.LogTransaction(
        '%016X' % (0x1000 + n), 700 + n, _T0 + datetime.timedelta(seconds=n),
        [change] if changes else [],
        {'items': {'pk': ['id'], 'version': 'abc'}} if changes else {})


class TestStagingBatch(private_pg.LogicalPGMixin, base.TestCase):

    def setUp(self):
        super().setUp()
        self.engine = sa.create_engine(self.private_database())
        self.addCleanup(self.engine.dispose)
        migration.upgrade(self.engine)
        self.assertTrue(staging_pg.usable(self.engine))

    def _stager(self, reader, batch=True):
        stream = base.unique_name('sb')
        stager = staging.Stager(self.engine, stream, reader)
        self.assertIsNotNone(stager._batch)
        if not batch:
            stager._batch = None
        self.addCleanup(stager.stop)
        stager.staged_position()
        return stager, stream

    def _outbox(self, stream):
        t = outbox.outbox
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.c.txid, t.c.log_position, t.c.committed_at,
                          t.c.payload, t.c.xid, t.c.seq)
                .where(t.c.stream == stream).order_by(t.c.id)).all()
            position = conn.execute(
                sa.select(outbox.log_positions.c.position).where(
                    outbox.log_positions.c.stream == stream)).scalar()
        return rows, position

    def test_batch_writes_what_the_generic_step_writes(self):
        txs = [_tx(1), _tx(2, changes=False), _tx(3)]
        got = {}
        for batch in (True, False):
            reader = _Reader()
            stager, stream = self._stager(reader, batch)
            self.assertEqual(2, stager.stage(txs))
            rows, position = self._outbox(stream)
            self.assertEqual(txs[-1].position, position)
            self.assertEqual([txs[-1].position], reader.confirmed)
            # txid is made from the stream name: compare the rest.
            got[batch] = ([r[1:] for r in rows], position,
                          [r[0] == staging.txid(stream, r[1])
                           for r in rows])
        self.assertEqual(got[False], got[True])
        self.assertEqual([True, True], got[True][2])

    def test_redelivered_batch_writes_nothing_and_confirms(self):
        reader = _Reader()
        stager, stream = self._stager(reader)
        self.assertEqual(2, stager.stage([_tx(1), _tx(2)]))
        self.assertEqual(0, stager.stage([_tx(1), _tx(2)]))
        self.assertEqual(1, stager.stage([_tx(2), _tx(3)]))
        rows, position = self._outbox(stream)
        self.assertEqual(['%016X' % (0x1000 + n) for n in (1, 2, 3)],
                         [r[1] for r in rows])
        self.assertEqual(_tx(3).position, position)
        self.assertEqual([_tx(2).position, _tx(2).position,
                          _tx(3).position], reader.confirmed)

    def test_waits_for_visibility_on_new_snapshots(self):
        reader = _Reader(invisible=2)
        stager, stream = self._stager(reader)
        self.assertEqual(1, stager.stage([_tx(1)]))
        self.assertEqual(3, len(reader.checks))
        for snapshot in reader.checks:
            xmin, xmax, _ = snapshot.split(':')
            self.assertLessEqual(int(xmin), int(xmax))
        self.assertEqual(1, len(self._outbox(stream)[0]))

    def _fails_then_goes_on(self, bad, error):
        reader = _Reader()
        stager, stream = self._stager(reader)
        self.assertEqual(1, stager.stage([_tx(1)]))
        self.assertRaises(error, stager.stage, [_tx(2), bad])
        rows, position = self._outbox(stream)
        self.assertEqual([_tx(1).position], [r[1] for r in rows])
        self.assertEqual(_tx(1).position, position)
        self.assertIsNone(stager._batch._conn)
        # The lock was released (rolled back): the next batch goes on.
        self.assertEqual(2, stager.stage([_tx(2), _tx(3)]))
        rows, position = self._outbox(stream)
        self.assertEqual(3, len(rows))
        self.assertEqual(_tx(3).position, position)

    def test_batch_failing_in_the_server_writes_nothing(self):
        # log_position holds 255 characters: the INSERT fails in the
        # commit's round trip, after the lock was taken.
        self._fails_then_goes_on(_tx(3)._replace(position='Z' * 300),
                                 Exception)

    def test_batch_failing_in_the_driver_writes_nothing(self):
        # psycopg2 refuses a NUL in a string before sending anything.
        self._fails_then_goes_on(
            _tx(3)._replace(position=_tx(3).position + '\0'), ValueError)

    def test_missing_position_row_is_refused(self):
        reader = _Reader()
        stager, stream = self._stager(reader)
        with self.engine.begin() as conn:
            conn.execute(outbox.log_positions.delete().where(
                outbox.log_positions.c.stream == stream))
        self.assertRaises(LookupError, stager.stage, [_tx(1)])
        self.assertEqual([], self._outbox(stream)[0])

    def _stream_row(self, stream, last_seq):
        with self.engine.begin() as conn:
            conn.execute(outbox.streams.insert().values(
                stream=stream, last_seq=last_seq, epoch='e' * 32))

    def _seqs(self, stream):
        return [(r[1], r[5]) for r in self._outbox(stream)[0]]

    def test_free_stream_lock_numbers_in_the_staging_commit(self):
        """Gapless after last_seq, older unnumbered entries first."""
        stager, stream = self._stager(_Reader())
        # Staged while the stream had no row: left to the relay.
        self.assertEqual(1, stager.stage([_tx(1)]))
        self.assertEqual([(_tx(1).position, None)], self._seqs(stream))
        self._stream_row(stream, 41)
        self.assertEqual(2, stager.stage([_tx(2), _tx(3)]))
        self.assertEqual([(_tx(n).position, 41 + n) for n in (1, 2, 3)],
                         self._seqs(stream))
        # A number given and not yet published counts (a relay that
        # died after numbering): the next follows it.
        with self.engine.begin() as conn:
            conn.execute(outbox.outbox.delete().where(
                outbox.outbox.c.log_position == _tx(1).position))
        self.assertEqual(1, stager.stage([_tx(4)]))
        self.assertEqual([(_tx(n).position, 41 + n) for n in (2, 3, 4)],
                         self._seqs(stream))

    def test_held_stream_lock_leaves_numbering_to_the_relay(self):
        """A relay cycle or a watermark holds the row: never waits."""
        stager, stream = self._stager(_Reader())
        self._stream_row(stream, 7)
        with self.engine.connect() as other:
            other.execute(sa.select(outbox.streams.c.last_seq).where(
                outbox.streams.c.stream == stream).with_for_update())
            self.assertEqual(2, stager.stage([_tx(1), _tx(2)]))
            self.assertEqual([(_tx(1).position, None),
                              (_tx(2).position, None)], self._seqs(stream))
            other.rollback()
        self.assertEqual(1, stager.stage([_tx(3)]))
        self.assertEqual([(_tx(n).position, 7 + n) for n in (1, 2, 3)],
                         self._seqs(stream))

    def test_failure_between_round_trips_releases_the_locks(self):
        """E.g. a value the payload cannot hold: rolled back at once."""
        stager, stream = self._stager(_Reader())
        self._stream_row(stream, 0)
        bad = _tx(1)
        bad.changes[0]['after']['name'] = float('nan')
        self.assertRaises(ValueError, stager.stage, [bad])
        self.assertIsNone(stager._batch._conn)
        with self.engine.connect() as other:
            for table in (outbox.streams, outbox.log_positions):
                other.execute(sa.select(table.c.stream).where(
                    table.c.stream == stream).with_for_update(nowait=True))
            other.rollback()
        self.assertEqual(1, stager.stage([_tx(1)]))
