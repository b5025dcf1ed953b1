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
relay in process, PostgreSQL) and two writer threads paced to 200
single-row UPDATE transactions per second in all; a push consumer
(RabbitMQ, state store on PostgreSQL) with a change handler runs in a
process of its own, as another service would (the deployment shape;
being the process's only service it sets ``[consumer]
gc_freeze_after_sync``, which keeps full garbage collections from
stalling it). The
same is measured with the consumer in the host's process too (``shape``
``inline``): one interpreter lock then serves writers, relay and
consumer, which shows what sharing it costs. Each
update writes a unique ``value``; the writer notes the wall-clock time
when it called ``commit()`` (logical decoding often delivers a change
before ``commit()`` has returned to Python, so the call is the common
starting point), the handler when the row reached it (the
reconciler calls handlers after the state store and the cache took the
batch, so this slightly overstates the time to the cache). The
reference is PostgreSQL logical decoding: the same writers on a
database of its own whose ``test_decoding`` slot is streamed by a
psycopg2 replication reader thread in the same process, on a private
PostgreSQL cluster started with ``wal_level = logical``
(:mod:`benchmarks.pgcluster`). The two run alternately, several
repetitions each; p50 and p99 are medians over the repetitions.
Targets: p50 <= 5 ms and p99 <= 20 ms, hard limits 10 ms and 50 ms.

The library's latency is also broken down into stages
(:mod:`benchmarks.stages`: commit -> sent by the relay -> received next
to the consumer -> visible to the consumer's handlers), from the
timestamps the messages carry and a tap queue beside the consumer's.
"""

import multiprocessing
import threading
import time

from sqlalchemy import orm

from benchmarks import common
from benchmarks import host as host_mod
from benchmarks import logical
from benchmarks import pgcluster
from benchmarks import stages

RATE = 200
TABLE_ROWS = 10000
TARGET_P50_MS = 5.0
TARGET_P99_MS = 20.0
LIMIT_P50_MS = 10.0
LIMIT_P99_MS = 50.0


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


class _Observer(object):
    """The consumer with the latency handler, and the stage tap.

    :param dedicated: the consumer owns its process (``[consumer]
        gc_freeze_after_sync`` on, as such a deployment would set it).
    """

    def __init__(self, state_url, nm, dedicated=False):
        self.seen = _Seen()
        conf = common.consumer_conf(state_url, nm)
        if dedicated:
            conf.set_override('gc_freeze_after_sync', True, 'consumer')
        self._consumer = common.consumer(conf)
        consumer = self._consumer.__enter__()
        try:
            consumer.add_handler('latency', _handler(self.seen))
            if not consumer.wait_synced(120):
                raise RuntimeError('latency consumer did not sync')
            self.tap = stages.Tap(nm)
        except BaseException:
            self._consumer.__exit__(None, None, None)
            raise

    def collect(self, commits, timeout):
        """``(handled {(id, value): time}, tapped)`` once all were seen."""
        self.seen.latencies(commits, timeout)
        with self.seen._lock:
            handled = dict(self.seen.times)
        with self.tap._lock:
            tapped = dict(self.tap.seen)
        return handled, tapped

    def close(self):
        self.tap.close()
        self._consumer.__exit__(None, None, None)


def _observer_main(pipe, state_url, nm):
    """The consumer's own process: answers ``collect`` requests."""
    try:
        observer = _Observer(state_url, nm, dedicated=True)
    except BaseException as exc:
        pipe.send(('error', repr(exc)))
        return
    pipe.send(('ready', None))
    try:
        while True:
            request = pipe.recv()
            if request[0] == 'stop':
                break
            pipe.send(('collected', observer.collect(*request[1:])))
    finally:
        observer.close()


class _RemoteObserver(object):
    """:class:`_Observer` in a process of its own (spawned, not forked)."""

    def __init__(self, state_url, nm):
        context = multiprocessing.get_context('spawn')
        self._pipe, child = context.Pipe()
        self._proc = context.Process(target=_observer_main, daemon=True,
                                     args=(child, state_url, nm))
        self._proc.start()
        child.close()
        if not self._pipe.poll(180):
            self.close()
            raise RuntimeError('latency consumer process did not start')
        kind, detail = self._pipe.recv()
        if kind != 'ready':
            self.close()
            raise RuntimeError('latency consumer process: %s' % detail)

    def collect(self, commits, timeout):
        self._pipe.send(('collect', commits, timeout))
        if not self._pipe.poll(timeout + 60):
            raise RuntimeError('latency consumer process did not answer')
        return self._pipe.recv()[1]

    def close(self):
        try:
            self._pipe.send(('stop',))
        except OSError:
            pass
        self._proc.join(30)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(10)


def _latencies(commits, handled):
    got = [(handled[(k, v)] - t) * 1000.0 for k, v, t in commits
           if (k, v) in handled]
    return got, len(commits) - len(got)


class _Library(object):
    """The host in this process; the consumer in its own or this one.

    :param shape: ``'process'`` (the consumer in a process of its own)
        or ``'inline'`` (in this process, sharing its interpreter lock).
    """

    def __init__(self, host_url, state_url, shape='process'):
        import oslo_publish
        self.nm = common.names('lat')
        self.engine, maker = _writers(host_url)
        self.handle = oslo_publish.install(
            common.host_conf(host_url, self.nm), maker,
            metadata=common.Base.metadata)
        self.writers = host_mod.Writers(maker)
        try:
            if shape == 'inline':
                self.observer = _Observer(state_url, self.nm)
            else:
                self.observer = _RemoteObserver(state_url, self.nm)
        except BaseException:
            self.handle.stop()
            self.engine.dispose()
            raise

    def measure(self, duration):
        done = _write(self.writers, duration)
        commits = [tuple(c) for c in done['commits']]
        handled, tapped = self.observer.collect(commits, 30)
        got, missing = _latencies(commits, handled)
        result = _summary(got, missing, done['committed'], done['elapsed'])
        result['stages'] = stages.breakdown(commits, handled, tapped)
        return result

    def close(self):
        self.observer.close()
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
    runs = {'library': [], 'inline': [], 'logical': []}
    with common.database() as host_url, common.database() as state_url, \
            common.database() as inline_host_url, \
            common.database() as inline_state_url, \
            pgcluster.cluster() as server, \
            pgcluster.database(server) as slot_url:
        for url in (host_url, inline_host_url, slot_url):
            common.create_host_tables(url, TABLE_ROWS)
        sides = {}
        try:
            sides['library'] = _Library(host_url, state_url)
            sides['inline'] = _Library(inline_host_url, inline_state_url,
                                       shape='inline')
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
    lib, ref = med['library'], med['logical']
    breakdowns = {name: _breakdown(runs[name])
                  for name in ('library', 'inline')}
    breakdown = breakdowns['library']
    figures = []
    for key, target, limit, label in (
            ('p50_ms', TARGET_P50_MS, LIMIT_P50_MS, 'p50'),
            ('p99_ms', TARGET_P99_MS, LIMIT_P99_MS, 'p99')):
        figures.append(common.figure(
            '3 latency commit -> cache, %s at %d tx/s' % (label, RATE),
            lib[key], 'ms', ref[key], 'PostgreSQL logical decoding',
            ratio_label='x logical decoding',
            target=('value', '<=', target), limit=('value', '<=', limit)))
    for stage in stages.STAGES[:3]:
        figures.append(common.figure(
            '3 latency stage %s, p50 (p99 %s ms)' % (
                stage.replace('_', ' '),
                _fmt_ms(breakdown[stage]['p99_ms'])),
            breakdown[stage]['p50_ms'], 'ms'))
    for key, label in (('p50_ms', 'p50'), ('p99_ms', 'p99')):
        figures.append(common.figure(
            '3 latency commit -> cache, consumer in the host process, %s'
            % label, med['inline'][key], 'ms', lib[key],
            'consumer in its own process', ratio_label='x own process'))
    return {'name': 'latency', 'title': 'Latency commit -> consumer cache',
            'figures': figures,
            'data': {'rate': RATE, 'duration_s': duration,
                     'repetitions': reps, 'medians': med, 'runs': runs,
                     'stages': breakdown,
                     'stages_inline': breakdowns['inline'],
                     'consumer': 'own process (stages, main figures); '
                                 'inline: in the host process',
                     'logical': True,
                     'targets_ms': {'p50': TARGET_P50_MS,
                                    'p99': TARGET_P99_MS},
                     'limits_ms': {'p50': LIMIT_P50_MS,
                                   'p99': LIMIT_P99_MS}}}


def _breakdown(runs):
    """Medians over the repetitions of each stage's p50 and p99."""
    return {stage: {key: common.median([r['stages'][stage][key]
                                        for r in runs
                                        if r['stages'][stage][key]
                                        is not None])
                    for key in ('p50_ms', 'p99_ms')}
            for stage in stages.STAGES}


def _fmt_ms(value):
    return '-' if value is None else '%.3g' % value


def plot(result, plt):
    data = result['data']
    fig, (ax, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = [n for n in ('library', 'inline', 'logical')
             if n in data['medians']]
    labels = {'library': 'oslo.publish\n(consumer: own process)',
              'inline': 'oslo.publish\n(consumer in host process)',
              'logical': 'PG logical decoding\n(private cluster)'}
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [data['medians'][n]['p50_ms']
                                  for n in names], 0.4, label='p50')
    ax.bar([i + 0.2 for i in x], [data['medians'][n]['p99_ms']
                                  for n in names], 0.4, label='p99')
    for value, color, style, text in (
            (TARGET_P50_MS, 'tab:blue', '--', 'target p50 <= %g ms'),
            (TARGET_P99_MS, 'tab:orange', '--', 'target p99 <= %g ms'),
            (LIMIT_P50_MS, 'tab:blue', ':', 'hard limit p50 %g ms'),
            (LIMIT_P99_MS, 'tab:orange', ':', 'hard limit p99 %g ms')):
        ax.axhline(value, color=color, linestyle=style, linewidth=1.0,
                   label=text % value)
    ax.set_ylim(bottom=0)
    ax.set_xticks(list(x))
    ax.set_xticklabels([labels[n] for n in names], fontsize=8)
    ax.set_ylabel('milliseconds')
    ax.set_title('Commit -> visible at %d tx/s (ms)' % data['rate'])
    ax.legend(fontsize=7)
    got = data.get('stages') or {}
    parts = [s for s in stages.STAGES[:3] if got.get(s, {}).get('p50_ms')
             is not None]
    left = 0.0
    for stage in parts:
        width = max(got[stage]['p50_ms'], 0.0)
        right.barh([0], [width], left=left, height=0.5,
                   label='%s %.2f ms' % (stage.replace('_', ' '), width))
        left += width
    right.set_xlim(left=0)
    right.set_ylim(-0.5, 1.3)
    right.set_yticks([])
    right.set_xlabel('milliseconds (p50 of each stage)')
    right.set_title('oslo.publish: stages of commit -> cache (p50, ms)')
    right.legend(fontsize=7, loc='upper right')
    fig.tight_layout()
    return {'latency.png': fig}
