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

"""Figure 3, latency: commit -> visible in the consumer's cache.

One process holds the host (``oslo_publish.install``, outbox delivery,
relay in process, PostgreSQL), two writer threads paced to 200
single-row UPDATE transactions per second in all, and a push consumer
(RabbitMQ, state store on PostgreSQL) with a change handler. Each
update writes a unique ``value``; the writer notes the wall-clock time
when it called ``commit()`` (logical decoding often delivers a change
before ``commit()`` has returned to Python, so the call is the common
starting point), the handler when the row reached it (the
reconciler calls handlers after the state store and the cache took the
batch, so this slightly overstates the time to the cache). The
reference is PostgreSQL logical decoding: the same writers on a
database of its own whose ``test_decoding`` slot is streamed by a
psycopg2 replication reader thread in the same process. The two run
alternately, several repetitions each; p50 and p99 are medians over the
repetitions.
"""

import threading
import time

from sqlalchemy import orm

from benchmarks import common
from benchmarks import host as host_mod
from benchmarks import logical

RATE = 200
TABLE_ROWS = 10000
TARGET_P50_MS = 10.0
TARGET_P99_MS = 50.0


class _Seen(object):

    def __init__(self):
        self.times = {}
        self._lock = threading.Lock()

    def note(self, ident, value, when):
        with self._lock:
            self.times.setdefault((ident, value), when)

    def latencies(self, commits, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all((k, v) in self.times for k, v, _ in commits):
                break
            time.sleep(0.05)
        got = [(self.times[(k, v)] - t) * 1000.0 for k, v, t in commits
               if (k, v) in self.times]
        return got, len(commits) - len(got)


def _handler(seen):
    from consumer import handlers

    class Handler(handlers.ChangeHandler):
        def on_update(self, table, key, before, after):
            seen.note(key[0], after['value'], time.time())

    return Handler()


def _writers(url):
    import sqlalchemy as sa
    engine = sa.create_engine(url)
    return engine, orm.sessionmaker(bind=engine)


def _write(writers, duration):
    writers.start({'kind': 'update', 'rows': 1, 'threads': 2,
                   'rate': RATE, 'duration': duration,
                   'table_rows': TABLE_ROWS, 'record': True})
    return writers.wait(True)


def _summary(samples, missing, committed, duration):
    return {'p50_ms': common.percentile(samples, 0.5),
            'p99_ms': common.percentile(samples, 0.99),
            'max_ms': max(samples) if samples else None,
            'count': len(samples), 'missing': missing,
            'tx_per_s': committed / duration}


class _Library(object):

    def __init__(self, host_url, state_url):
        import oslo_publish
        self.nm = common.names('lat')
        self.engine, maker = _writers(host_url)
        self.handle = oslo_publish.install(
            common.host_conf(host_url, self.nm), maker,
            metadata=common.Base.metadata)
        self.seen = _Seen()
        self.writers = host_mod.Writers(maker)
        self._consumer = common.consumer(
            common.consumer_conf(state_url, self.nm))
        self.consumer = self._consumer.__enter__()
        self.consumer.add_handler('latency', _handler(self.seen))
        if not self.consumer.wait_synced(120):
            raise RuntimeError('latency consumer did not sync')

    def measure(self, duration):
        done = _write(self.writers, duration)
        got, missing = self.seen.latencies(done['commits'], 30)
        return _summary(got, missing, done['committed'], done['elapsed'])

    def close(self):
        self._consumer.__exit__(None, None, None)
        self.handle.stop()
        self.engine.dispose()
        common.cleanup_broker(self.nm)


class _Logical(object):

    def __init__(self, url):
        self.url = url
        self.slot = logical.create_slot(url)
        self.seen = _Seen()
        self.reader = logical.Reader(
            url, self.slot,
            lambda op, ident, value, when: self.seen.note(ident, value, when))
        self.reader.start()
        self.engine, maker = _writers(url)
        self.writers = host_mod.Writers(maker)

    def measure(self, duration):
        done = _write(self.writers, duration)
        got, missing = self.seen.latencies(done['commits'], 30)
        return _summary(got, missing, done['committed'], done['elapsed'])

    def close(self):
        self.reader.stop()
        self.engine.dispose()
        logical.drop_slot(self.url, self.slot)


def run(opts):
    duration, reps = (3.0, 2) if opts.quick else (10.0, 3)
    with_logical = logical.available(common.test_base.PG_URL)
    runs = {'library': [], 'logical': []}
    with common.database() as host_url, common.database() as state_url, \
            common.database() as slot_url:
        common.create_host_tables(host_url, TABLE_ROWS)
        common.create_host_tables(slot_url, TABLE_ROWS)
        sides = {'library': _Library(host_url, state_url)}
        try:
            if with_logical:
                sides['logical'] = _Logical(slot_url)
            for rep in range(reps):
                order = sorted(sides, reverse=bool(rep % 2))
                for name in order:
                    runs[name].append(sides[name].measure(duration))
        finally:
            for side in sides.values():
                side.close()
    med = {name: {key: common.median([r[key] for r in got])
                  for key in ('p50_ms', 'p99_ms', 'tx_per_s')}
           for name, got in runs.items() if got}
    lib, ref = med['library'], med.get('logical')
    figures = []
    for key, target, label in (('p50_ms', TARGET_P50_MS, 'p50'),
                               ('p99_ms', TARGET_P99_MS, 'p99')):
        figures.append({
            'figure': '3 latency commit -> cache, %s at %d tx/s'
                      % (label, RATE),
            'value': lib[key], 'unit': 'ms',
            'baseline': ref[key] if ref else None,
            'baseline_label': 'PostgreSQL logical decoding',
            'ratio': common.ratio(lib[key], ref[key] if ref else None),
            'ratio_label': 'x logical decoding',
            'target': '<= %g ms' % target, 'met': lib[key] <= target})
    return {'name': 'latency', 'title': 'Latency commit -> consumer cache',
            'figures': figures,
            'data': {'rate': RATE, 'duration_s': duration,
                     'repetitions': reps, 'medians': med, 'runs': runs,
                     'logical': with_logical}}


def plot(result, plt):
    data = result['data']
    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = [n for n in ('library', 'logical') if n in data['medians']]
    labels = {'library': 'oslo.publish (outbox, RabbitMQ)',
              'logical': 'PG logical decoding'}
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [data['medians'][n]['p50_ms']
                                  for n in names], 0.4, label='p50')
    ax.bar([i + 0.2 for i in x], [data['medians'][n]['p99_ms']
                                  for n in names], 0.4, label='p99')
    ax.axhline(TARGET_P50_MS, color='tab:blue', linestyle='--',
               linewidth=0.8)
    ax.axhline(TARGET_P99_MS, color='tab:orange', linestyle='--',
               linewidth=0.8)
    ax.set_xticks(list(x))
    ax.set_xticklabels([labels[n] for n in names], fontsize=8)
    ax.set_ylabel('ms')
    ax.set_title('Commit -> visible at %d tx/s' % data['rate'])
    ax.legend()
    fig.tight_layout()
    return {'latency.png': fig}
