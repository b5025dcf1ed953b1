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

"""Figure 8, capture backends: ``capture = session`` beside ``logical``.

On PostgreSQL (a private cluster with ``wal_level = logical``,
:mod:`benchmarks.pgcluster`) and on MariaDB (a private server with a
row binlog, :mod:`tests.private_mariadb`), one database per side, the
machine's PostgreSQL for the consumers' state stores:

* write path, as figure 1 (:mod:`benchmarks.write_path`): time per
  transaction of one sequential writer (an ORM session loading 3 rows,
  updating 2, deleting 1, inserting 2: 5 row changes), each mode in a
  worker process of its own, modes interleaved in short blocks, the
  ratio of a mode the median of its per-round ratios to the baseline
  (paired): ``baseline`` (no middleware), ``session`` (figure 1's
  ``outbox``: session capture, relay in process), ``logical``
  (``capture = logical``, relay and stager in process) and
  ``logical_standalone`` (the relay and its log reader in another
  process, as ``oslo-publish-relay``);
* write throughput: two writer threads committing single-row UPDATE
  transactions as fast as they can for a fixed time on a database
  without the middleware (baseline), one with ``capture = session`` and
  one with ``capture = logical`` (relays in process as by default, no
  consumer running yet); the sides run one after the other, in
  alternating order, several repetitions; the figures are the medians
  of the per-repetition ratios side / baseline of committed
  transactions per second;
* latency commit -> consumer cache, paced at 200 transactions a second,
  for both backends (push consumer on RabbitMQ), p50 and p99 medians
  over the repetitions.

The figures of PostgreSQL keep their names; MariaDB's say ``MariaDB``.
The private MariaDB server runs with ``innodb_flush_log_at_trx_commit
= 2`` and ``sync_binlog = 0`` (as the tests' server), the PostgreSQL
cluster with ``fsync = on``: compare each backend with its own
baseline, not the two databases.
"""

import contextlib
import uuid

import sqlalchemy as sa
from sqlalchemy import orm

from benchmarks import common
from benchmarks import host as host_mod
from benchmarks import latency
from benchmarks import pgcluster
from benchmarks import write_path

TABLE_ROWS = 10000
RATE = 200
SIDES = ('baseline', 'session', 'logical')
BACKENDS = ('postgresql', 'mysql')
LABELS = {'postgresql': '', 'mysql': ', MariaDB'}
#: write_path modes of the sides (``outbox`` is session capture);
#: ``logical_standalone``: the relay and its log reader in another
#: process (``oslo-publish-relay``), write path only.
WRITE_PATH_MODES = {'baseline': 'baseline', 'session': 'outbox',
                    'logical': 'logical',
                    'logical_standalone': 'logical_standalone'}
WRITE_PATH_SIDES = SIDES + ('logical_standalone',)


class _Side(object):

    def __init__(self, name, url, state_url=None):
        import oslo_publish
        self.name = name
        self.engine = sa.create_engine(url, pool_size=10)
        maker = orm.sessionmaker(bind=self.engine)
        self.writers = host_mod.Writers(maker)
        self.handle = None
        self._consumer = None
        if name == 'baseline':
            return
        self.nm = common.names('cap' + name[0])
        conf = common.host_conf(url, self.nm)
        conf.set_override('capture', name, 'oslo_publish')
        self.conf = conf
        if name == 'logical':
            from oslo_publish import logcapture
            self.tables = oslo_publish.resolve_tables(
                conf, common.Base.metadata, self.engine)
            logcapture.reader_class(self.engine.dialect.name).setup(
                conf, self.engine, self.tables, self.nm['stream'])
        self.handle = oslo_publish.install(conf, maker,
                                           metadata=common.Base.metadata)
        self._state_url = state_url

    def start_consumer(self):
        """The latency phase's consumer (in this process)."""
        self.seen = latency._Seen()
        self._consumer = common.consumer(
            common.consumer_conf(self._state_url, self.nm))
        self.consumer = self._consumer.__enter__()
        self.consumer.add_handler('latency', latency._handler(self.seen))
        if not self.consumer.wait_synced(120):
            raise RuntimeError('%s consumer did not sync' % self.name)

    def throughput(self, duration):
        self.writers.start({'kind': 'update', 'rows': 1, 'threads': 2,
                            'duration': duration,
                            'table_rows': TABLE_ROWS})
        done = self.writers.wait(False)
        self.settle()
        return done['committed'] / done['elapsed']

    def settle(self):
        if self.handle is None:
            return
        if self.name == 'logical':
            stream = self.nm['stream']
            if self.engine.dialect.name == 'postgresql':
                from oslo_publish.logcapture import pgoutput
                pgoutput.catch_up(self.engine, stream, 120)
            else:
                from oslo_publish.logcapture import binlog
                binlog.catch_up(self.engine, stream, self.conf,
                                self.tables, 120)
        self.handle.relay.wait_drained(120)

    def latency(self, duration):
        self.writers.start({'kind': 'update', 'rows': 1, 'threads': 2,
                            'rate': RATE, 'duration': duration,
                            'table_rows': TABLE_ROWS, 'record': True})
        done = self.writers.wait(True)
        got, missing = self.seen.latencies(done['commits'], 30)
        return latency._summary(got, missing, done['committed'],
                                done['elapsed'])

    def close(self):
        if self._consumer is not None:
            self._consumer.__exit__(None, None, None)
        if self.handle is not None:
            self.handle.stop()
            common.cleanup_broker(self.nm)
        self.engine.dispose()


@contextlib.contextmanager
def _server(backend):
    """The server URL (no database) of a private server with its log."""
    if backend == 'postgresql':
        with pgcluster.cluster() as url:
            yield url
    else:
        from tests import private_mariadb
        yield private_mariadb.server().url + '?charset=utf8mb4'


@contextlib.contextmanager
def _database(backend, server):
    if backend == 'postgresql':
        with pgcluster.database(server) as url:
            yield url
        return
    name = 'bench_%s' % uuid.uuid4().hex[:10]
    url = sa.engine.make_url(server)
    admin = sa.create_engine(url, isolation_level='AUTOCOMMIT')
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql('CREATE DATABASE %s' % name)
        yield url.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.exec_driver_sql('DROP DATABASE IF EXISTS %s' % name)
    finally:
        admin.dispose()


def _write_path(backend, server, transactions, repetitions):
    """Figure 1's measurement of the three sides (ms, paired ratios)."""
    modes = tuple(WRITE_PATH_MODES[name] for name in WRITE_PATH_SIDES)
    with _database(backend, server) as url:
        got = write_path.measure(backend, transactions, repetitions,
                                 modes=modes, url=url)
    by_side = {}
    for name in WRITE_PATH_SIDES:
        mode = WRITE_PATH_MODES[name]
        by_side[name] = {
            'ms': got['median_ms_per_transaction'][mode],
            'ratio': got['ratio_to_baseline'][mode],
            'samples_ms': got['samples_ms'][mode]}
    return by_side


def _backend(backend, duration, reps, wp_tx, wp_reps):
    ratios = {'session': [], 'logical': []}
    rates = {name: [] for name in SIDES}
    lat = {'session': [], 'logical': []}
    with _server(backend) as server:
        wp = _write_path(backend, server, wp_tx, wp_reps)
        with _database(backend, server) as base_url, \
                _database(backend, server) as session_url, \
                _database(backend, server) as logical_url, \
                common.database() as state_a, \
                common.database() as state_b:
            urls = {'baseline': base_url, 'session': session_url,
                    'logical': logical_url}
            for url in urls.values():
                common.create_host_tables(url, TABLE_ROWS)
            sides = {}
            try:
                sides['baseline'] = _Side('baseline', base_url)
                sides['session'] = _Side('session', session_url, state_a)
                sides['logical'] = _Side('logical', logical_url, state_b)
                for rep in range(reps):
                    order = SIDES if rep % 2 == 0 else \
                        tuple(reversed(SIDES))
                    got = {name: sides[name].throughput(duration)
                           for name in order}
                    for name, value in got.items():
                        rates[name].append(value)
                    for name in ratios:
                        ratios[name].append(got[name] / got['baseline'])
                # Consumers only now: in this process they would take
                # the writers' CPU (and GIL) during the throughput phase.
                for name in lat:
                    sides[name].start_consumer()
                for rep in range(reps):
                    for name in (('session', 'logical') if rep % 2 == 0
                                 else ('logical', 'session')):
                        lat[name].append(sides[name].latency(duration))
            finally:
                for side in sides.values():
                    side.close()
    return {'write_path': wp, 'tx_per_s': rates, 'ratios': ratios,
            'latency': lat,
            'median_ratios': {name: common.median(values)
                              for name, values in ratios.items()},
            'median_latency': {
                name: {key: common.median([r[key] for r in got])
                       for key in ('p50_ms', 'p99_ms')}
                for name, got in lat.items()}}


def _figures(backend, data):
    label = LABELS[backend]
    med_rate = {name: common.median(values) for name, values in
                data['tx_per_s'].items()}
    med_ratio = data['median_ratios']
    med_lat = data['median_latency']
    wp = data['write_path']
    figures = []
    for name in ('logical', 'logical_standalone', 'session'):
        side = ('logical, standalone relay' if name == 'logical_standalone'
                else name)
        figures.append(common.figure(
            '8 write path, capture = %s%s (ms per 5-change tx)'
            % (side, label), wp[name]['ms'], 'ms', wp['baseline']['ms'],
            'no middleware, same server (figure 1 method)',
            ratio_label='x baseline (median of paired ratios %.3g)'
            % wp[name]['ratio']))
    figures += [
        common.figure('8 write overhead, capture = logical%s (tx/s)'
                      % label,
                      med_rate['logical'], 'tx/s', med_rate['baseline'],
                      'no middleware, same server',
                      target=('ratio', '>=', 0.95),
                      ratio_label='x baseline (median of paired ratios '
                                  '%.3g)' % med_ratio['logical']),
        common.figure('8 write overhead, capture = session%s (tx/s)'
                      % label,
                      med_rate['session'], 'tx/s', med_rate['baseline'],
                      'no middleware, same server',
                      ratio_label='x baseline (median of paired ratios '
                                  '%.3g)' % med_ratio['session']),
    ]
    for key, name in (('p50_ms', 'p50'), ('p99_ms', 'p99')):
        figures.append(common.figure(
            '8 latency commit -> cache, capture = logical%s, %s at %d tx/s'
            % (label, name, RATE), med_lat['logical'][key], 'ms',
            med_lat['session'][key], 'capture = session',
            ratio_label='x session'))
    return figures


def run(opts):
    duration, reps = (2.0, 2) if opts.quick else (8.0, 5)
    wp_tx, wp_reps = (30, 5) if opts.quick else (60, 25)
    backends = {}
    figures = []
    for backend in BACKENDS:
        data = _backend(backend, duration, reps, wp_tx, wp_reps)
        backends[backend] = data
        figures += _figures(backend, data)
    pg = backends['postgresql']
    return {'name': 'capture_backends',
            'title': 'Capture backends: session and logical',
            'figures': figures,
            # The PostgreSQL figures at the top level, as before.
            'data': dict(pg, duration_s=duration, repetitions=reps,
                         rate=RATE, write_path_transactions=wp_tx,
                         write_path_repetitions=wp_reps,
                         backends=backends)}


def plot(result, plt):
    data = result['data']
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = [n for n in SIDES if data['tx_per_s'].get(n)]
    left.bar(range(len(names)), [common.median(data['tx_per_s'][n])
                                 for n in names])
    left.set_xticks(range(len(names)))
    left.set_xticklabels(names)
    left.set_ylabel('committed tx/s (2 writers)')
    left.set_title('Write throughput by capture backend')
    backends = ('session', 'logical')
    x = range(len(backends))
    right.bar([i - 0.2 for i in x], [data['median_latency'][n]['p50_ms']
                                     for n in backends], 0.4, label='p50')
    right.bar([i + 0.2 for i in x], [data['median_latency'][n]['p99_ms']
                                     for n in backends], 0.4, label='p99')
    right.set_xticks(list(x))
    right.set_xticklabels(backends)
    right.set_ylabel('milliseconds')
    right.set_title('Commit -> cache at %d tx/s' % data['rate'])
    right.legend(fontsize=7)
    fig.tight_layout()
    return {'capture_backends.png': fig}
