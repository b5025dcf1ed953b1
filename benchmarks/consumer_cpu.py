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

"""CPU per row-delta of the consumer after verification (micro benchmark).

Not part of the suite's figures: a tool to isolate the consumer's own
work from the bus and the host. Verified delta messages (built and
verified before the clock starts) are handed straight to a
:class:`consumer.reconciler.Reconciler` (its persister on a thread of its
own, the state store on PostgreSQL with ``persist_rows`` on) that holds
a table of ``--table-rows`` rows; the run ends when the persister made
the last sequence number durable. Reported, per 10,000 row-deltas:

* ``apply_cpu_ms``: CPU of the thread that calls ``handle_many`` (order,
  cache, handlers, hand-off to the persister);
* ``persister_cpu_ms``: CPU of the persister thread (encoding, the
  state-store statements, commit);
* ``server_cpu_ms``: CPU of the PostgreSQL backends of the state store
  (from ``/proc/<pid>/stat``; the server must run on this machine);
* ``resume``: with ``--resume``, the seconds and CPU of a new reconciler
  starting from that state store (the state load).

Usage::

    python -m benchmarks.consumer_cpu --url postgresql://root@127.0.0.1/db \\
        --deltas 10000 --rows-per-tx 100 --tx-per-message 10 --repeat 3
"""

import argparse
import functools
import gc
import json
import os
import random
import statistics
import time

_TICK = os.sysconf('SC_CLK_TCK')


def _task_cpu(pid, tid=None):
    path = '/proc/%d/stat' % pid if tid is None else \
        '/proc/%d/task/%d/stat' % (pid, tid)
    try:
        with open(path) as stat:
            fields = stat.read().rsplit(')', 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


class _Harness(object):

    def __init__(self, url, table_rows, stream):
        self.conf = None
        self.inserts = False
        self.verify_in_run = False
        self.url = url
        self.stream = stream
        self.table_rows = table_rows

    def setup(self):
        from consumer import options
        from oslo_config import cfg
        from tests.unit import fakehost
        conf = cfg.ConfigOpts()
        options.register_opts(conf)
        conf([], project='bench')
        for name, value in (('streams', [self.stream]),
                            ('reorder_window', 100000),
                            ('persist_rows', True)):
            conf.set_override(name, value, 'consumer')
        self.conf = conf
        fakehost.PAGE = 1000
        host = fakehost.FakeHost(self.stream)
        host.add_table('items', columns=(
            ('id', 'INTEGER'), ('name', 'VARCHAR'), ('value', 'INTEGER'),
            ('host', 'VARCHAR'), ('note', 'VARCHAR')))
        rows = host.tables['items']['rows']
        for i in range(1, self.table_rows + 1):
            rows[(i,)] = {'id': i, 'name': 'row-%d' % i, 'value': 0,
                          'host': 'host-%d' % (i % 50),
                          'note': 'n' * 40}
        self.host = host

    def build(self, deltas, rows_per_tx, tx_per_message, seed=1):
        from consumer import metrics as metrics_mod
        from consumer import verify
        from oslo_publish import wire
        rng = random.Random(seed)
        verifier = verify.Verifier(self.conf, [self.stream],
                                   metrics_mod.ConsumerMetrics())
        messages = []
        batch = []
        n = 0
        while n < deltas:
            changes = []
            for _ in range(rows_per_tx):
                if self.inserts:
                    changes.append(self.host.change('items', wire.INSERT, {
                        'id': self.table_rows + n + 1, 'name': 'new-%d' % n,
                        'value': n, 'host': 'host-%d' % (n % 50),
                        'note': 'x%d' % n}))
                else:
                    key = rng.randint(1, self.table_rows)
                    changes.append(self.host.change('items', wire.UPDATE, {
                        'id': key, 'value': n, 'note': 'x%d' % n}))
                n += 1
            batch.append(self.host.commit(*changes))
            if len(batch) == tx_per_message:
                messages.append(self.host.message(batch))
                batch = []
        if batch:
            messages.append(self.host.message(batch))
        publisher = wire.publisher_id(self.stream)
        if self.verify_in_run:
            return [functools.partial(verifier.verify, publisher,
                                      wire.EVENT_DELTA, payload)
                    for payload in messages], n
        return [verifier.verify(publisher, wire.EVENT_DELTA, payload)
                for payload in messages], n

    def reconciler(self, state):
        from consumer import cache as cache_mod
        from consumer import handlers
        from consumer import metrics as metrics_mod
        from consumer import reconciler
        from consumer import source as source_mod
        metrics = metrics_mod.ConsumerMetrics()
        dispatcher = handlers.Dispatcher(metrics, 100)
        source = source_mod.RPCSnapshotSource(self.conf, self.stream,
                                              caller=self.host.caller)
        rec = reconciler.Reconciler(self.conf, self.stream, source,
                                    cache_mod.Cache(), state, dispatcher,
                                    metrics)
        return rec, dispatcher


def _backends(engine):
    # A connection of its own (not one of the store's pool).
    import sqlalchemy as sa
    probe = sa.create_engine(engine.url, poolclass=sa.pool.NullPool)
    try:
        with probe.connect() as conn:
            return [row[0] for row in conn.execute(sa.text(
                'SELECT pid FROM pg_stat_activity WHERE datname = '
                'current_database() AND pid <> pg_backend_pid()'))]
    finally:
        probe.dispose()


def run_once(args, profile=None):
    from consumer import state as state_mod
    harness = _Harness(args.url, args.table_rows,
                       'bench%d' % random.randrange(10 ** 6))
    harness.setup()
    harness.inserts = args.op == 'insert'
    harness.verify_in_run = args.verify_in_run
    state = state_mod.StateStore.from_url(args.url)
    state.upgrade()
    rec, dispatcher = harness.reconciler(state)
    if args.gc_tenure:
        from consumer import gc_tenure
        gc_tenure.install()
    rec.start(run_thread=True)
    deadline = time.monotonic() + 120
    while not rec.synced and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rec.synced, 'not synced'
    rec._persister.flush(60)
    messages, deltas = harness.build(args.deltas, args.rows_per_tx,
                                     args.tx_per_message)
    if args.verify_in_run:
        # Payloads built before, verified (decoded) while timed: the
        # decoded rows are new objects, as a listener's are.
        last = messages[-1]().last_seq
    else:
        last = messages[-1].last_seq
    gc.collect()
    persister = rec._persister._thread
    pid = os.getpid()
    backends = _backends(state.engine)
    server0 = sum(_task_cpu(b) for b in backends)
    pers0 = _task_cpu(pid, persister.native_id)
    proc0 = time.process_time()
    apply0 = time.thread_time()
    began = time.perf_counter()
    if profile is not None:
        profile.enable()
    for start in range(0, len(messages), args.batch):
        batch = messages[start:start + args.batch]
        if args.verify_in_run:
            batch = [verify() for verify in batch]
        results = rec.handle_many(batch)
        for result in results:
            if isinstance(result, Exception):
                raise result
    if profile is not None:
        profile.disable()
    apply_cpu = time.thread_time() - apply0
    if not rec._persister.wait_durable(last, 120):
        raise RuntimeError('not durable')
    wall = time.perf_counter() - began
    proc = time.process_time() - proc0
    pers = _task_cpu(pid, persister.native_id) - pers0
    server = sum(_task_cpu(b) for b in _backends(state.engine)) - server0
    per = 10000.0 / deltas
    result = {'deltas': deltas, 'messages': len(messages),
              'wall_s': wall,
              'apply_cpu_ms': apply_cpu * per * 1000,
              'persister_cpu_ms': pers * per * 1000,
              'process_cpu_ms': proc * per * 1000,
              'server_cpu_ms': server * per * 1000}
    rec.stop()
    dispatcher.stop()
    if args.gc_tenure:
        gc_tenure.uninstall()
    if args.resume:
        view = dict(rec._cache.view().rows('items'))
        del rec
        gc.collect()
        rec2, dispatcher2 = harness.reconciler(state)
        backends = _backends(state.engine)
        server0 = sum(_task_cpu(b) for b in backends)
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        rec2.start(run_thread=False)
        result['resume_s'] = time.perf_counter() - t0
        result['resume_cpu_s'] = time.process_time() - cpu0
        result['resume_server_cpu_s'] = sum(
            _task_cpu(b) for b in _backends(state.engine)) - server0
        got = rec2._cache.view().rows('items')
        assert len(got) == len(view) and rec2.applied == last, \
            (len(got), len(view), rec2.applied, last)
        rec2.stop()
        dispatcher2.stop()
    with state.engine.begin() as conn:
        from consumer.state import rows as rows_table
        from consumer.state import positions
        conn.execute(rows_table.delete().where(
            rows_table.c.stream == harness.stream))
        conn.execute(positions.delete().where(
            positions.c.scope_key == harness.stream))
    state.close()
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--url', default='postgresql://root@127.0.0.1/test')
    parser.add_argument('--deltas', type=int, default=10000)
    parser.add_argument('--rows-per-tx', type=int, default=100)
    parser.add_argument('--tx-per-message', type=int, default=10)
    parser.add_argument('--table-rows', type=int, default=100000)
    parser.add_argument('--batch', type=int, default=1,
                        help='messages per handle_many call')
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--op', choices=('update', 'insert'),
                        default='update', help='row updates of random '
                        'keys of the table, or inserts of new keys')
    parser.add_argument('--gc-tenure', action='store_true',
                        help='with consumer.gc_tenure installed')
    parser.add_argument('--verify-in-run', action='store_true',
                        help='verify (decode) each message while timed '
                        '(its CPU counts as apply CPU)')
    parser.add_argument('--resume', action='store_true')
    parser.add_argument('--profile', help='write a cProfile of the apply '
                        'thread to this file')
    args = parser.parse_args(argv)
    results = []
    profile = None
    if args.profile:
        import cProfile
        profile = cProfile.Profile()
    for _ in range(args.repeat):
        results.append(run_once(args, profile))
        print(json.dumps(results[-1]), flush=True)
    if profile is not None:
        profile.dump_stats(args.profile)
    keys = [k for k in results[0] if k not in ('deltas', 'messages')]
    print(json.dumps({'median': {k: statistics.median(r[k] for r in results)
                                 for k in keys}}))


if __name__ == '__main__':
    main()
