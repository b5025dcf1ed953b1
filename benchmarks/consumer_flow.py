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

"""Consumer path: initial sync, commit-to-cache latency, throughput.

::

    python -m benchmarks.consumer_flow [--backends postgresql,mysql]
        [--rows 200000] [--rate 200] [--seconds 15] [--bulk 2000]

A real host (the end-to-end tests' host runner: ``oslo_publish.install``,
relay and snapshot server, pages of 1000 rows) runs in its own process on
PostgreSQL or MariaDB, with a real RabbitMQ. Per backend:

``initial sync``
    ``--rows`` rows in ``items``; a consumer in a process of its own
    (state store on SQLite, mirrored rows persisted) starts and waits
    until synced. Compared with a plain keyset-paginated SELECT of the
    same rows into Python dicts, from this process. Peak RSS of the host
    and of the consumer process (``VmHWM``).
``latency``
    the host commits ``--rate`` transactions a second for ``--seconds``
    seconds, each writing the wall time into ``pings.ts``; a change
    handler of a running consumer records ``now - ts`` when the row
    becomes visible (p50, p99, max).
``throughput``
    ``--bulk`` random transactions by 4 writers while the consumer is
    stopped (they wait in its durable queue); row deltas per second the
    restarted consumer applies until it has caught up.

Results are printed and written to
``benchmarks/results/consumer_flow.json``.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import sqlalchemy as sa

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, 'benchmarks', 'results', 'consumer_flow.json')


def _peak_rss_mb(pid):
    try:
        with open('/proc/%d/status' % pid) as status:
            for line in status:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _baseline_select(url, page=1000):
    engine = sa.create_engine(url)
    items = sa.Table('items', sa.MetaData(), autoload_with=engine)
    start = time.monotonic()
    after, count = None, 0
    while True:
        query = sa.select(items).order_by(items.c.id).limit(page)
        if after is not None:
            query = query.where(items.c.id > after)
        with engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        count += len(rows)
        if len(rows) < page:
            break
        after = rows[-1]['id']
    elapsed = time.monotonic() - start
    engine.dispose()
    return elapsed, count


def _consumer_conf(conf, stream, topic, pool, state_url):
    from consumer import listener
    listener.prepare_transport_conf(conf)
    for name, value in (('streams', [stream]), ('topics', [topic]),
                        ('pool', pool), ('snapshot_timeout', 120.0),
                        ('resync_backoff_min', 0.0),
                        ('inactivity_timeout', 60.0)):
        conf.set_override(name, value, 'consumer')
    conf.set_override('connection', state_url, 'consumer_database')


def _child(spec):
    """Consumer process of the initial sync: prints seconds and VmHWM."""
    from tests import base
    from consumer import service
    fixture = base.ConfFixture()
    fixture.setUp()
    conf = fixture.conf
    conf.set_override('transport_url', spec['transport_url'])
    conf.set_override('control_exchange', spec['exchange'])
    _consumer_conf(conf, spec['stream'], spec['topic'], spec['pool'],
                   spec['state_url'])
    consumer = service.Consumer(conf)
    start = time.monotonic()
    consumer.start()
    synced = consumer.wait_synced(3600)
    elapsed = time.monotonic() - start
    rows = consumer.view().count('items')
    consumer.stop()
    print(json.dumps({'synced': synced, 'seconds': elapsed, 'rows': rows,
                      'peak_rss_mb': _peak_rss_mb(os.getpid())}))
    return 0


class _Latency(object):
    """Change handler: records commit-to-visible delays of pings."""

    tables = ('pings',)

    def __init__(self):
        self.samples = []

    def on_add(self, table, key, row):
        self.samples.append(time.time() - row['ts'])

    def on_update(self, table, key, before, after):
        self.samples.append(time.time() - after['ts'])

    def on_delete(self, table, key, row):
        pass


def _percentile(values, fraction):
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _run_backend(backend, args):
    from consumer import service
    from oslo_publish import outbox
    from tests import base
    from tests.functional import test_consumer_e2e as e2e

    conf_fixture = base.ConfFixture()
    conf_fixture.setUp()
    conf = conf_fixture.conf
    db = base.DatabaseFixture(backend)
    db.setUp()
    transport = base.TransportFixture(conf)
    transport.setUp()
    stream = base.unique_name('bench')
    host = e2e.HostProcess(db.url, transport, stream, transport.topic)
    host.args += ['--page-size', '1000']
    host.setUp()
    result = {'backend': backend, 'rows': args.rows}
    try:
        host.command('preload', rows=args.rows, timeout=3600)
        base_seconds, count = _baseline_select(db.url)
        result['select_seconds'] = base_seconds
        spec = {'transport_url': transport.url,
                'exchange': transport.exchange, 'stream': stream,
                'topic': transport.topic, 'pool': base.unique_name('bp'),
                'state_url': 'sqlite:///%s' % os.path.join(
                    conf_fixture.tempdir, 'sync.sqlite')}
        child = subprocess.run(
            [sys.executable, '-m', 'benchmarks.consumer_flow', '--child',
             json.dumps(spec)], cwd=ROOT, capture_output=True, text=True,
            timeout=7200)
        synced = json.loads(child.stdout.strip().splitlines()[-1])
        result['sync_seconds'] = synced['seconds']
        result['sync_ratio'] = synced['seconds'] / base_seconds
        result['consumer_peak_rss_mb'] = synced['peak_rss_mb']
        result['host_peak_rss_mb'] = _peak_rss_mb(host.proc.pid)

        _consumer_conf(conf, stream, transport.topic,
                       base.unique_name('bp'), 'sqlite:///%s' % os.path.join(
                           conf_fixture.tempdir, 'live.sqlite'))
        consumer = service.Consumer(conf)
        latency = _Latency()
        consumer.add_handler('latency', latency)
        consumer.start()
        consumer.wait_synced(3600)
        host.command('paced', tps=args.rate, seconds=args.seconds)
        host.command('wait', timeout=args.seconds * 10 + 60)
        host.command('idle')

        def _caught_up():
            with db.engine.connect() as conn:
                last = conn.execute(sa.select(outbox.streams.c.last_seq)
                                    .where(outbox.streams.c.stream ==
                                           stream)).scalar()
            return consumer.status()[0]['applied_seq'] == last
        base.wait_for(_caught_up, 120)
        consumer.dispatcher.wait_idle(60)
        samples = list(latency.samples)
        result['latency_samples'] = len(samples)
        result['latency_p50_ms'] = _percentile(samples, 0.5) * 1000
        result['latency_p99_ms'] = _percentile(samples, 0.99) * 1000
        result['latency_max_ms'] = max(samples) * 1000

        # Throughput: deltas wait in the durable queue while the consumer
        # is down; the restarted consumer drains them.
        consumer.stop()
        host.command('write', tx=args.bulk, writers=4, seed=11)
        host.command('wait', timeout=3600)
        host.command('idle', timeout=3600)
        consumer = service.Consumer(conf)
        start = time.monotonic()
        consumer.start()
        base.wait_for(_caught_up, 600)
        elapsed = time.monotonic() - start
        deltas = consumer.metrics.value('consumer_deltas_applied_total',
                                        stream=stream)
        result['bulk_deltas'] = deltas
        result['bulk_deltas_per_second'] = deltas / elapsed
        consumer.stop()
    finally:
        host.cleanUp()
        transport.cleanUp()
        db.cleanUp()
        conf_fixture.cleanUp()
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--backends', default='postgresql,mysql')
    parser.add_argument('--rows', type=int, default=200000)
    parser.add_argument('--rate', type=int, default=200)
    parser.add_argument('--seconds', type=float, default=15.0)
    parser.add_argument('--bulk', type=int, default=2000)
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(json.loads(args.child))
    results = []
    for backend in args.backends.split(','):
        result = _run_backend(backend.strip(), args)
        results.append(result)
        print('%(backend)s: initial sync of %(rows)d rows %(sync_seconds).1fs'
              ' = %(sync_ratio).1fx a keyset SELECT (%(select_seconds).2fs);'
              ' peak RSS host %(host_peak_rss_mb).0f MiB, consumer '
              '%(consumer_peak_rss_mb).0f MiB' % result)
        print('%(backend)s: commit -> cache latency at the given rate: '
              'p50 %(latency_p50_ms).1f ms, p99 %(latency_p99_ms).1f ms, '
              'max %(latency_max_ms).1f ms (%(latency_samples)d samples)'
              % result)
        print('%(backend)s: bulk: %(bulk_deltas_per_second).0f row deltas/s'
              % result)
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, 'w') as out:
        json.dump({'rate': args.rate, 'seconds': args.seconds,
                   'results': results}, out, indent=2, sort_keys=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
