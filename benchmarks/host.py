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

"""A benchmark host in a process of its own.

``python -m benchmarks.host --db URL --exchange X --stream S --topic T
[--plain] [--page-size N] [--no-snapshot-server]`` installs
:func:`oslo_publish.install` (outbox delivery, relay and snapshot server
in process) on a sessionmaker of the table ``bench_items`` (which must
exist, see :func:`benchmarks.common.create_host_tables`); ``--plain``
installs nothing. It prints ``{"ready": true}`` and then obeys JSON
commands, one per line, answering one JSON line each:

``{"cmd": "write", "kind": "insert"|"update", "rows": K, "threads": W,
"tx": N, "duration": D, "rate": R, "id_base": B, "table_rows": M,
"record": bool}``
    starts W writer threads (answers at once). Each transaction inserts
    K new rows (ids from B) or updates K random rows of ids 1..M (the
    ``value`` column set to a process-wide increasing counter). Stops
    after N transactions in all, or after D seconds; R > 0 paces the
    writers to R transactions per second in all.
``{"cmd": "wait"}``
    waits for the writers: ``{"committed": n, "elapsed": s}`` plus, with
    ``record``, ``"commits": [[id, value, unix_time], ...]`` where the time
    is when the transaction's ``commit()`` was called.
``{"cmd": "idle"}``
    answers once the relay has published every committed entry.
``{"cmd": "counters"}`` / ``{"cmd": "reset"}``
    rows returned by the SELECT statements of the process's engine (the
    rows a write statement's RETURNING hands back are listed in
    ``by_kind`` but not counted: they are no extra read), rows
    the writers themselves loaded (``select_rows``, ``writer_reads``),
    and the same rows by statement kind (``by_kind``: ``"SELECT
    bench_items"``, ``"SELECT oslo_publish_outbox (aggregate)"``, ...).
``{"cmd": "memory"}``
    ``VmHWM`` and ``VmRSS`` of this process in kB.
``{"cmd": "quit"}``
"""

import argparse
import collections
import json
import random
import re
import sys
import threading
import time

import sqlalchemy as sa
from sqlalchemy import orm

from benchmarks import common


def _say(**data):
    sys.stdout.write(json.dumps(data) + '\n')
    sys.stdout.flush()


class Writers(object):

    def __init__(self, maker):
        self.maker = maker
        self._lock = threading.Lock()
        self._threads = []
        self._counter = 0
        self.reset()

    def reset(self):
        with self._lock:
            self.committed = 0
            self.errors = 0
            self.writer_reads = 0
            self.commits = []

    def _next_value(self):
        with self._lock:
            self._counter += 1
            return self._counter

    def _transaction(self, spec, rng, next_id):
        rows = spec['rows']
        with self.maker() as session:
            if spec['kind'] == 'insert':
                first = next_id()
                session.add_all([common.Item(**common.row(first + n))
                                 for n in range(rows)])
                touched = [(first + n, 0) for n in range(rows)]
            else:
                ids = sorted(rng.sample(range(1, spec['table_rows'] + 1),
                                        rows))
                items = session.scalars(sa.select(common.Item).where(
                    common.Item.id.in_(ids))).all()
                touched = []
                for item in items:
                    item.value = self._next_value()
                    touched.append((item.id, item.value))
                with self._lock:
                    self.writer_reads += len(items)
            began = time.time()
            session.commit()
        return touched, began

    def _run(self, spec, index, deadline, quota, next_id):
        rng = random.Random(index * 7919 + int(time.time()))
        threads = spec.get('threads', 1)
        rate = spec.get('rate') or 0
        interval = threads / float(rate) if rate else 0.0
        due = time.monotonic()
        while time.monotonic() < deadline:
            with self._lock:
                if quota is not None:
                    if quota[0] <= 0:
                        return
                    quota[0] -= 1
            if interval:
                due += interval
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            for _attempt in range(10):
                try:
                    touched, began = self._transaction(spec, rng, next_id)
                    break
                except sa.exc.OperationalError:
                    continue  # deadlock: retry
                except Exception:  # noqa: counted, the writer goes on
                    with self._lock:
                        self.errors += 1
            else:
                continue
            with self._lock:
                self.committed += 1
                if spec.get('record'):
                    self.commits.extend([k, v, began] for k, v in touched)

    def start(self, spec):
        self.reset()
        duration = spec.get('duration') or 10 ** 6
        deadline = time.monotonic() + duration
        quota = [spec['tx']] if spec.get('tx') else None
        ids = [spec.get('id_base', 1)]

        def next_id():
            with self._lock:
                first = ids[0]
                ids[0] += spec['rows']
                return first

        self._began = time.monotonic()
        for index in range(spec.get('threads', 1)):
            thread = threading.Thread(target=self._run, daemon=True, args=(
                spec, index, deadline, quota, next_id))
            thread.start()
            self._threads.append(thread)

    def wait(self, record):
        for thread in self._threads:
            thread.join()
        self._threads = []
        answer = {'committed': self.committed, 'errors': self.errors,
                  'elapsed': time.monotonic() - self._began}
        if record:
            answer['commits'] = self.commits
        return answer


_TABLE = re.compile(r'\b(?:FROM|UPDATE|INTO)\s+[`"]?(\w+)', re.I)
_AGGREGATE = re.compile(r'\b(?:count|max|min|sum)\s*\(', re.I)


#: Statement verbs whose returned rows are their own writes.
WRITES = frozenset(('INSERT', 'UPDATE', 'DELETE'))


def statement_kind(statement):
    """``"VERB table"`` of a statement, ``(aggregate)`` for aggregates."""
    text = statement.lstrip()
    verb = text.split(None, 1)[0].rstrip(';').upper() if text else ''
    found = _TABLE.search(text)
    table = found.group(1) if found else '?'
    head = text[:found.start()] if found else text
    if verb == 'SELECT' and _AGGREGATE.search(head):
        return 'SELECT %s (aggregate)' % table
    return '%s %s' % (verb, table)


class SelectCounter(object):
    """Rows returned by an engine's SELECTs; RETURNING rows listed apart."""

    def __init__(self, engine):
        self.rows = 0
        self.by_kind = collections.Counter()
        self._lock = threading.Lock()
        sa.event.listen(engine, 'after_cursor_execute', self._after)

    def reset(self):
        with self._lock:
            self.rows = 0
            self.by_kind.clear()

    def _after(self, conn, cursor, statement, parameters, context,
               executemany):
        if cursor.description is None or not cursor.rowcount or \
                cursor.rowcount < 0:
            return
        kind = statement_kind(statement)
        if kind.split(' ', 1)[0] in WRITES:
            # INSERT/UPDATE/DELETE ... RETURNING hand back the rows the
            # statement itself wrote: no extra read of the host's tables.
            # Listed, not counted. Anything else that returns rows reads
            # them (a SELECT, and a statement that only starts otherwise:
            # the relay's "BEGIN; SELECT ... FOR UPDATE" of its stream
            # row, its "WITH ... UPDATE ... RETURNING" claim of outbox
            # entries).
            kind += ' RETURNING (not counted)'
        with self._lock:
            if not kind.endswith('(not counted)'):
                self.rows += cursor.rowcount
            self.by_kind[kind] += cursor.rowcount


def _idle(engine, handle, timeout=300):
    return handle.relay.wait_drained(timeout)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument('--db', required=True)
    parser.add_argument('--exchange', required=True)
    parser.add_argument('--stream', required=True)
    parser.add_argument('--topic', required=True)
    parser.add_argument('--plain', action='store_true')
    parser.add_argument('--no-snapshot-server', action='store_true')
    parser.add_argument('--page-size', type=int, default=1000)
    parser.add_argument('--pool-size', type=int, default=10)
    args = parser.parse_args(argv)
    engine = sa.create_engine(args.db, pool_size=args.pool_size)
    counter = SelectCounter(engine)
    maker = orm.sessionmaker(bind=engine)
    handle = None
    if not args.plain:
        import oslo_publish
        nm = {'exchange': args.exchange, 'stream': args.stream,
              'topic': args.topic}
        conf = common.host_conf(
            args.db, nm, page_size=args.page_size,
            snapshot_server=not args.no_snapshot_server)
        handle = oslo_publish.install(conf, maker,
                                      metadata=common.Base.metadata)
    writers = Writers(maker)
    record = False
    _say(ready=True)
    for line in sys.stdin:
        command = json.loads(line)
        cmd = command['cmd']
        if cmd == 'write':
            record = command.get('record', False)
            writers.start(command)
            _say(ok=cmd)
        elif cmd == 'wait':
            _say(ok=cmd, **writers.wait(record))
        elif cmd == 'idle':
            _say(ok=cmd, idle=_idle(engine, handle) if handle else True)
        elif cmd == 'counters':
            _say(ok=cmd, select_rows=counter.rows,
                 writer_reads=writers.writer_reads,
                 by_kind=dict(counter.by_kind))
        elif cmd == 'reset':
            counter.reset()
            writers.reset()
            _say(ok=cmd)
        elif cmd == 'memory':
            _say(ok=cmd, **common.memory_kb())
        elif cmd == 'quit':
            break
    if handle is not None:
        handle.stop()
    engine.dispose()
    _say(ok='quit')
    return 0


if __name__ == '__main__':
    sys.exit(main())
