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

"""PostgreSQL logical decoding, the log-based reference.

A replication slot with the built-in ``test_decoding`` output plugin,
streamed by psycopg2's replication support (:class:`Reader`). It needs
``wal_level = logical``, which a machine's own server usually does not
have: the benchmarks run it on a private cluster they start themselves
(:mod:`benchmarks.pgcluster`).

``python -m benchmarks.logical --worker --url URL`` is a write-path
worker (the protocol of :mod:`benchmarks.write_path`) running the same
workload as its ``baseline`` mode on a table of its own while a slot on
its database is streamed by a reader in another process (what a
log-based CDC service such as Debezium does): the write overhead of the
log-based floor.
"""

import argparse
import re
import select
import subprocess
import sys
import threading
import time
import uuid

import sqlalchemy as sa

_CHANGE = re.compile(r'^table [^:]+: (INSERT|UPDATE|DELETE): id\[integer\]:'
                     r'(\d+)(?:.* value\[integer\]:(-?\d+))?')


def available(url):
    """True when the server at ``url`` runs with ``wal_level = logical``.

    The benchmarks do not depend on it (see :mod:`benchmarks.pgcluster`).
    """
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql('SHOW wal_level').scalar() == \
                'logical'
    finally:
        engine.dispose()


def create_slot(url):
    slot = 'bench_%s' % uuid.uuid4().hex[:10]
    engine = sa.create_engine(url, isolation_level='AUTOCOMMIT')
    with engine.connect() as conn:
        conn.exec_driver_sql(
            "SELECT pg_create_logical_replication_slot('%s', "
            "'test_decoding')" % slot)
    engine.dispose()
    return slot


def drop_slot(url, slot):
    engine = sa.create_engine(url, isolation_level='AUTOCOMMIT')
    try:
        with engine.connect() as conn:
            for _ in range(50):
                active = conn.exec_driver_sql(
                    "SELECT active FROM pg_replication_slots WHERE "
                    "slot_name = '%s'" % slot).scalar()
                if not active:
                    break
                time.sleep(0.1)
            conn.exec_driver_sql(
                "SELECT pg_drop_replication_slot(slot_name) FROM "
                "pg_replication_slots WHERE slot_name = '%s'" % slot)
    finally:
        engine.dispose()


def _dsn(url):
    parsed = sa.engine.make_url(url)
    parts = ['dbname=%s' % parsed.database,
             'host=%s' % (parsed.host or '127.0.0.1'),
             'port=%s' % (parsed.port or 5432),
             'user=%s' % (parsed.username or 'postgres')]
    if parsed.password:
        parts.append('password=%s' % parsed.password)
    return ' '.join(parts)


class Reader(object):
    """Streams a slot; calls ``on_change(op, id, value, unix_time)``.

    Confirms every message it read (``send_feedback``), so the server
    can recycle the WAL.
    """

    def __init__(self, url, slot, on_change=None):
        self.url = url
        self.slot = slot
        self.on_change = on_change
        self.messages = 0
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def run(self):
        import psycopg2
        from psycopg2 import extras
        conn = psycopg2.connect(
            _dsn(self.url), connection_factory=extras.
            LogicalReplicationConnection)
        cursor = conn.cursor()
        cursor.start_replication(slot_name=self.slot, decode=True,
                                 options={'skip-empty-xacts': '1'})
        try:
            while not self._stop.is_set():
                msg = cursor.read_message()
                if msg is None:
                    select.select([cursor], [], [], 0.2)
                    continue
                now = time.time()
                self.messages += 1
                if self.on_change is not None:
                    found = _CHANGE.match(msg.payload)
                    if found:
                        value = found.group(3)
                        self.on_change(found.group(1), int(found.group(2)),
                                       int(value) if value else None, now)
                cursor.send_feedback(flush_lsn=msg.data_start)
        finally:
            conn.close()


def worker(url):
    """A write-path worker with a slot streamed by another process."""
    from benchmarks import write_path
    slot = create_slot(url)
    reader = subprocess.Popen(
        [sys.executable, '-m', 'benchmarks.logical', '--reader', '--url',
         url, '--slot', slot], stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        write_path.worker('slot', url, write_path.TRANSPORT_URL, None)
    finally:
        reader.stdin.close()
        reader.wait(30)
        drop_slot(url, slot)


def _read_until_eof(url, slot):
    reader = Reader(url, slot)
    reader.start()
    sys.stdin.read()
    reader.stop()


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument('--worker', action='store_true')
    parser.add_argument('--reader', action='store_true')
    parser.add_argument('--url', required=True)
    parser.add_argument('--slot')
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.url)
    else:
        _read_until_eof(args.url, args.slot)
    return 0


if __name__ == '__main__':
    sys.exit(main())
