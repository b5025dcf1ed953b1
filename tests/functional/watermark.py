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

"""Concurrent writers while snapshots meet the relay's watermark.

One loop shared by the logical-capture and direct-publishing tests:
writer threads keep changing ``items`` while the test opens snapshots
under :meth:`Relay.lock_for_snapshot` and checks that the rows a
snapshot sees are exactly the published deltas up to its watermark.
"""

import random
import threading

import sqlalchemy as sa

from tests import base


def check_under_writers(case, write, open_snapshot, writers=4, rounds=5,
                        first=1, per_round=20, timeout=30):
    """Run ``writers`` threads of ``write`` and check ``rounds`` snapshots.

    ``case`` has ``engine``, ``relay``, ``publisher`` (a recording
    publisher) and ``table(conn)``. ``write(conn, rng)`` makes one
    transaction's changes; ``open_snapshot(snap)`` starts the snapshot
    transaction on ``snap`` and runs while the relay's snapshot lock is
    held. Round ``r`` (from 0) waits until more than ``(r + first) *
    per_round`` transactions were published. Asserts every snapshot and
    that no writer failed; returns after the writers stopped.
    """
    stop = threading.Event()
    errors = []

    def writer(seed):
        rng = random.Random(seed)
        while not stop.is_set():
            try:
                with case.engine.begin() as conn:
                    write(conn, rng)
            except sa.exc.DBAPIError:
                pass  # deadlock between writers: rolled back
            except Exception as exc:  # noqa: reported below
                errors.append(exc)
                return

    threads = [threading.Thread(target=writer, args=(n,), daemon=True)
               for n in range(writers)]
    for thread in threads:
        thread.start()
    try:
        for round_ in range(rounds):
            base.wait_for(lambda: len(case.publisher.transactions) >
                          (round_ + first) * per_round, timeout)
            with case.engine.connect() as snap:
                # As the snapshot server: S opens with the lock held.
                with case.relay.lock_for_snapshot() as mark:
                    open_snapshot(snap)
                    n = mark.publish_visible(snap)
                seen = case.table(snap)
                snap.rollback()
            rows, _ = case.publisher.replay(n)
            case.assertEqual(seen, rows, 'watermark %d' % n)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    case.assertEqual([], errors)


def repeatable_read(snap):
    """PostgreSQL: a REPEATABLE READ transaction, snapshot taken now."""
    snap.execution_options(isolation_level='REPEATABLE READ')
    snap.exec_driver_sql('SELECT 1')


def consistent_snapshot(snap):
    """MariaDB/MySQL: the InnoDB snapshot taken now."""
    snap.exec_driver_sql('START TRANSACTION WITH CONSISTENT SNAPSHOT')
