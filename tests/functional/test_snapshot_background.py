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

"""A snapshot is readable before it is durable, and nothing is lost.

The reconciler's worker and persister threads run (as in a service);
the state store is PostgreSQL, where the snapshot's rows are streamed
into one transaction while the pages are read (consumer.staged_rows).
The load is held after its first rows until the test lets it go, so
the stream is synced while its snapshot is not yet in the store:

* a delta applied meanwhile is shown but not acknowledged, and is
  written after the snapshot;
* a stop (or a crash: the server rolls the transaction back the same
  way) before the snapshot is committed leaves the store as it was
  before it, and the next start converges from there: a new initial
  snapshot for a fresh consumer, a resume from the old position after
  a resync.
"""

import threading

from consumer import exceptions
from consumer import state as state_mod
from oslo_publish import wire
from tests import base
from tests.unit import test_reconciler

#: Rows of the host table; the load is held after HOLD_AT of them.
ROWS = 3000
HOLD_AT = 1500


class _Held(object):
    """Holds the state store's snapshot loads after HOLD_AT rows."""

    def __init__(self, store):
        self.release = threading.Event()
        self.reached = threading.Event()
        self.loads = 0
        real = store._refill_rows

        def held(conn, stream, table, items):
            self.loads += 1
            return real(conn, stream, table, self._gate(items))
        store._refill_rows = held

    def _gate(self, items):
        for count, item in enumerate(items):
            if count == HOLD_AT:
                self.reached.set()
                self.release.wait(60)
            yield item


class _Background(test_reconciler.ReconcilerTestCase):

    STATE_BACKEND = 'postgresql'

    def setUp(self):
        super().setUp()
        for i in range(6, ROWS + 1):
            self.host.change('instances', wire.INSERT,
                             {'id': i, 'name': 'vm%d' % i})

    def start(self, state=None):
        """A reconciler with its worker and persister threads."""
        rec = self.make(state=state, run_thread=True)
        self.assertTrue(rec.wait_synced(30))
        return rec

    def store(self):
        """A second connection pool on the state store (a reader)."""
        store = state_mod.StateStore.from_url(self.state_url)
        self.addCleanup(store.close)
        return store

    def stored(self, store):
        positions = {t: s.seq for t, s in store.load(
            self.STREAM, 'oslo_publish', 'snapshot').items()}
        return positions, dict(store.load_rows(self.STREAM, 'instances'))

    def message(self, payload):
        return self.verifier.verify(wire.publisher_id(self.STREAM),
                                    wire.EVENT_DELTA, payload)

    def stop_held(self, rec, held):
        """Stop ``rec`` while its snapshot load is held; it rolls back."""
        stopper = threading.Thread(target=rec.stop, kwargs={'timeout': 0.5})
        stopper.start()
        base.wait_for(lambda: any(
            run.snapshot is not None and run.snapshot._cancelled
            for run in rec._persister._queue), 30,
            message='the stop did not cancel the snapshot write')
        held.release.set()
        stopper.join(30)
        self.assertFalse(stopper.is_alive())


class TestSyncedBeforeDurable(_Background):

    def test_synced_before_durable_and_delta_written_after(self):
        """Readable at once; the delta is acknowledged after the rows."""
        held = _Held(self.state)
        rec = self.make(run_thread=True)
        self.addCleanup(held.release.set)
        self.assertTrue(rec.wait_synced(30))
        self.assertTrue(held.reached.wait(30))
        # Shown, not durable: the store still has nothing.
        self.assertEqual(ROWS, self.cache.view().count('instances'))
        self.assertIsNone(rec.durable)
        self.assertEqual('live', rec.status_info()['state'])
        reader = self.store()
        self.assertEqual(({}, {}), self.stored(reader))
        msg = self.message(self.host.write('instances', wire.UPDATE,
                                           {'id': 7, 'name': 'renamed'}))
        self.assertEqual('applied', rec.handle(msg))
        self.assertEqual('renamed',
                         self.cache.view().get('instances', (7,))['name'])
        self.assertFalse(rec.settle(msg, 0.2))
        self.assertFalse(rec.wait_durable(0.1))
        self.assertEqual(({}, {}), self.stored(reader))
        held.release.set()
        self.assertTrue(rec.wait_durable(30))
        self.assertTrue(rec.settle(msg, 5))
        base.wait_for(lambda: rec.durable == self.host.seq, 30)
        self.assertConverged(rec)
        self.assertEqual(({'instances': self.host.seq},
                          self.host.tables['instances']['rows']),
                         self.stored(reader))
        self.assertEqual(1, held.loads)

    def test_durable_first_option_writes_before_synced(self):
        """snapshot_durable_before_synced: durable when synced."""
        self.conf.set_override('snapshot_durable_before_synced', True,
                               'consumer')
        rec = self.start()
        self.assertEqual(0, rec.durable)
        self.assertEqual(({'instances': 0},
                          self.host.tables['instances']['rows']),
                         self.stored(self.store()))


class TestStopMidPersist(_Background):

    def test_initial_snapshot_rolled_back_then_taken_again(self):
        """Stopped before the snapshot is stored: a new one at restart."""
        held = _Held(self.state)
        rec = self.make(run_thread=True)
        self.addCleanup(held.release.set)
        self.assertTrue(rec.wait_synced(30))
        self.assertTrue(held.reached.wait(30))
        payload = self.host.write('instances', wire.DELETE, {'id': 9})
        msg = self.message(payload)
        self.assertEqual('applied', rec.handle(msg))
        self.stop_held(rec, held)
        self.assertFalse(rec.settle(msg, 0.1))
        reader = self.store()
        self.assertEqual(({}, {}), self.stored(reader))
        # Restarted: no state, so a new initial snapshot; the delta is
        # redelivered (it was not acknowledged) and is a duplicate.
        again = self.start(state=reader)
        self.assertEqual(2, self.resyncs('initial'))
        self.assertTrue(again.wait_durable(30))
        redelivered = self.message(payload)
        error = self.assertRaises(exceptions.Rejected, again.handle,
                                  redelivered)
        self.assertEqual('replayed', error.reason)
        self.assertTrue(again.settle(redelivered, 5))
        self.assertConverged(again)

    def test_resync_rolled_back_resumes_from_the_old_position(self):
        """Stopped before a resync is stored: resume from before it."""
        rec = self.start()
        self.assertTrue(rec.wait_durable(30))
        before = self.stored(self.store())
        self.assertEqual(({'instances': 0},
                          self.host.tables['instances']['rows']), before)
        held = _Held(self.state)
        self.addCleanup(held.release.set)
        rec.resync()
        rec._wake.set()
        self.assertTrue(held.reached.wait(30))
        base.wait_for(lambda: rec._persister.snapshot_pending, 30,
                      message='the resync was not installed')
        self.assertTrue(rec.synced)
        self.assertIsNone(rec.durable)
        payload = self.host.write('instances', wire.UPDATE,
                                  {'id': 3, 'name': 'late'})
        self.assertEqual('applied', rec.handle(self.message(payload)))
        self.stop_held(rec, held)
        reader = self.store()
        self.assertEqual(before, self.stored(reader))
        again = self.start(state=reader)
        self.assertEqual(1, self.resyncs('initial'))
        self.assertEqual(0, again.applied)
        # The unacknowledged delta comes again and is applied.
        self.assertEqual('applied', again.handle(self.message(payload)))
        self.assertTrue(again.wait_durable(30))
        self.assertConverged(again)
