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

"""Figure 2, keeping up: maximum commit rate with several writers.

Three writer processes (:mod:`benchmarks.host`) insert into the
benchmark table on PostgreSQL as fast as they can, single-row and
100-row transactions. Baseline: the same writers without the
middleware. Library: writers with ``oslo_publish.install`` (outbox,
relay in each process, one shared gapless stream) followed by a push
consumer in this process (RabbitMQ, state store on PostgreSQL,
``persist_rows`` on). Every 0.5 s the consumer lag is sampled: in
transactions (committed outbox entries - applied sequence) and in
seconds (the consumer's ``lag_seconds``). The lag is bounded when its
least-squares slope over the run is below 0.02 s/s and the backlog left
at the end drains within 5 s. Runs alternate, baseline then library,
the median over the repetitions is reported.
"""

import time

import sqlalchemy as sa

from benchmarks import common
from oslo_publish import outbox

WRITERS = 3
SIZES = (1, 100)
SAMPLE = 0.5
MAX_SLOPE = 0.02
MAX_DRAIN = 5.0


def _committed(engine, stream):
    with engine.connect() as conn:
        last = conn.execute(sa.select(outbox.streams.c.last_seq).where(
            outbox.streams.c.stream == stream)).scalar() or 0
        # Committed = published (last_seq) + everything not confirmed yet,
        # numbered or not (numbered ones lie above last_seq).
        pending = conn.execute(outbox.count_unpublished(stream)).scalar()
    return last + pending


def _write(hosts, rows, duration, id_base):
    for i, host in enumerate(hosts):
        host.send('write', kind='insert', rows=rows, threads=1,
                  duration=duration, id_base=id_base + i * 10 ** 7)
    for host in hosts:
        host.expect(60)


def _wait(hosts):
    done = [host.command('wait', timeout=600) for host in hosts]
    return sum(d['committed'] for d in done), max(d['elapsed'] for d in done)


def _run_library(hosts, consumer, engine, stream, rows, duration,
                 id_base):
    began = time.monotonic()
    _write(hosts, rows, duration, id_base)
    samples = []
    while time.monotonic() - began < duration:
        time.sleep(SAMPLE)
        status = consumer.status()[0]
        samples.append((time.monotonic() - began,
                        _committed(engine, stream) -
                        (status['applied_seq'] or 0),
                        status['lag_seconds'] or 0.0))
    committed, elapsed = _wait(hosts)
    ended = time.monotonic()
    target = _committed(engine, stream)
    while time.monotonic() - ended < MAX_DRAIN * 6:
        if (consumer.status()[0]['applied_seq'] or 0) >= target:
            break
        time.sleep(0.05)
    drain = time.monotonic() - ended
    status = consumer.status()[0]
    # The first second is the writers' ramp-up.
    steady = [s for s in samples if s[0] >= 1.0] or samples
    return {'tx_per_s': committed / elapsed,
            'row_deltas_per_s': committed * rows / elapsed,
            'lag_tx_slope': common.slope([(t, n) for t, n, _ in steady]),
            'lag_s_slope': common.slope([(t, s) for t, _, s in steady]),
            'lag_tx_max': max([n for _, n, _ in samples] or [0]),
            'lag_s_max': max([s for _, _, s in samples] or [0]),
            'drain_s': drain, 'samples': samples,
            'consumer_status': status}


def run(opts):
    duration = opts.duration
    reps = 1 if opts.quick else 2
    nm = common.names('keep')
    results = {rows: {'baseline': [], 'library': []} for rows in SIZES}
    with common.database() as host_url, common.database() as state_url:
        common.create_host_tables(host_url)
        engine = sa.create_engine(host_url)
        plain, lib = [], []
        try:
            plain = [common.HostProcess(host_url, nm, '--plain')
                     for _ in range(WRITERS)]
            lib = [common.HostProcess(host_url, nm, *(
                ['--no-snapshot-server'] if i else []))
                for i in range(WRITERS)]
            conf = common.consumer_conf(state_url, nm)
            with common.consumer(conf) as consumer:
                if not consumer.wait_synced(120):
                    raise RuntimeError('keeping-up consumer did not sync')
                id_base = 1
                for rep in range(reps):
                    for rows in SIZES:
                        _write(plain, rows, duration / 2.0, id_base)
                        committed, elapsed = _wait(plain)
                        id_base += 10 ** 8
                        results[rows]['baseline'].append(
                            {'tx_per_s': committed / elapsed,
                             'row_deltas_per_s': committed * rows / elapsed})
                        results[rows]['library'].append(_run_library(
                            lib, consumer, engine, nm['stream'], rows,
                            duration, id_base))
                        id_base += 10 ** 8
        finally:
            for host in plain + lib:
                host.close()
            engine.dispose()
            common.cleanup_broker(nm)
    figures = []
    summary = {}
    for rows in SIZES:
        base = common.median([r['tx_per_s']
                              for r in results[rows]['baseline']])
        got = results[rows]['library']
        tx = common.median([r['tx_per_s'] for r in got])
        slope_s = common.median([r['lag_s_slope'] for r in got])
        slope_tx = common.median([r['lag_tx_slope'] for r in got])
        drain = common.median([r['drain_s'] for r in got])
        bounded = slope_s <= MAX_SLOPE and drain <= MAX_DRAIN
        summary[rows] = {'baseline_tx_per_s': base, 'tx_per_s': tx,
                         'lag_s_slope': slope_s, 'lag_tx_slope': slope_tx,
                         'drain_s': drain, 'bounded': bounded}
        label = 'single-row' if rows == 1 else '%d-row' % rows
        figures.append({
            'figure': '2 keeping up, %s tx, %d writers' % (label, WRITERS),
            'value': tx, 'unit': 'tx/s', 'baseline': base,
            'baseline_label': 'no middleware',
            'ratio': common.ratio(tx, base), 'ratio_label': 'x baseline rate',
            'target': 'lag bounded', 'met': bounded})
        figures.append({
            'figure': '2 keeping up, %s tx: row-deltas/s' % label,
            'value': tx * rows, 'unit': 'rows/s', 'baseline': base * rows,
            'baseline_label': 'no middleware',
            'ratio': common.ratio(tx, base), 'ratio_label': 'x baseline rate',
            'target': None, 'met': None})
        figures.append({
            'figure': '2 keeping up, %s tx: lag slope' % label,
            'value': slope_s, 'unit': 's/s', 'baseline': None,
            'baseline_label': None, 'ratio': None,
            'target': '<= %g s/s, drain <= %g s (drain %.2f s)' % (
                MAX_SLOPE, MAX_DRAIN, drain), 'met': bounded})
    return {'name': 'keeping_up', 'title': 'Keeping up',
            'figures': figures,
            'data': {'writers': WRITERS, 'duration_s': duration,
                     'repetitions': reps, 'summary': summary,
                     'runs': results}}


def plot(result, plt):
    data = result['data']
    fig, axes = plt.subplots(1, len(SIZES), figsize=(10, 3.5))
    for ax, rows in zip(axes, SIZES):
        run = data['runs'][str(rows)] if str(rows) in data['runs'] else \
            data['runs'][rows]
        for i, got in enumerate(run['library']):
            ax.plot([s[0] for s in got['samples']],
                    [s[2] for s in got['samples']],
                    label='rep %d: %.0f tx/s' % (i + 1, got['tx_per_s']))
        ax.set_xlabel('seconds')
        ax.set_ylabel('consumer lag (s)')
        ax.set_title('%d-row transactions, %d writers'
                     % (rows, data['writers']))
        ax.legend(fontsize=8)
    fig.tight_layout()
    return {'keeping_up.png': fig}
