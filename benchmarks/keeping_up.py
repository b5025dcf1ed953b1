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
seconds (the consumer's ``lag_seconds``: commit -> apply delay of the
last transaction it applied, so it stays flat while nothing is applied;
the backlog in transactions shows that case). Targets: the lag's
least-squares slope over the run <= 0.02 s/s, the backlog left at the
end drained within 5 s, and >= 50,000 row-deltas/s with 100-row
transactions. Every library run starts from a drained consumer (the
previous run's backlog is waited out first, up to 10 minutes, and the
wait recorded as ``settle_s``), so runs do not inherit each other's
lag. Runs alternate, baseline then library; the median over the
repetitions is reported. The consumer is the only service of this
process (the rest are the lag samplers), so it runs with ``[consumer]
gc_tenure`` on, as a dedicated consumer process whose cache keeps
growing would: without it every full garbage collection rescans the
whole cache, which grows by the rows the writers insert.
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
MIN_ROW_DELTAS = 50000.0
SETTLE = 600.0


def _positions(engine, stream):
    """``(committed, published)`` transactions of the stream."""
    with engine.connect() as conn:
        last = conn.execute(sa.select(outbox.streams.c.last_seq).where(
            outbox.streams.c.stream == stream)).scalar() or 0
        # Committed = published (last_seq) + everything not confirmed yet,
        # numbered or not (numbered ones lie above last_seq).
        pending = conn.execute(outbox.count_unpublished(stream)).scalar()
    return last + pending, last


def _committed(engine, stream):
    return _positions(engine, stream)[0]


def _where(samples):
    """Median backlog per stage over ``samples`` (transactions).

    ``relay``: committed, not yet published (confirmed by the broker);
    ``bus``: published, not yet received by the consumer (in the broker
    queue or the consumer's listener); ``consumer``: received, not yet
    applied to the cache; ``unpersisted``: applied, not yet in the state
    store.
    """
    full = [s for s in samples if len(s) >= 8]
    if not full:
        return {}
    return {
        'relay': common.median([s[3] - s[5] for s in full]),
        'bus': common.median([s[5] - s[6] for s in full]),
        'consumer': common.median([s[6] - s[4] for s in full]),
        'unpersisted': common.median([s[4] - s[7] for s in full])}


def _write(hosts, rows, duration, id_base):
    for i, host in enumerate(hosts):
        host.send('write', kind='insert', rows=rows, threads=1,
                  duration=duration, id_base=id_base + i * 10 ** 7)
    for host in hosts:
        host.expect(60)


def _wait(hosts):
    done = [host.command('wait', timeout=600) for host in hosts]
    return sum(d['committed'] for d in done), max(d['elapsed'] for d in done)


def _applied(consumer):
    return consumer.status()[0]['applied_seq'] or 0


def _settle(consumer, engine, stream):
    """Wait until the consumer applied everything committed so far."""
    began = time.monotonic()
    target = _committed(engine, stream)
    while _applied(consumer) < target:
        if time.monotonic() - began > SETTLE:
            raise RuntimeError('the consumer did not catch up within %d s '
                               'before a run (%d of %d applied)'
                               % (SETTLE, _applied(consumer), target))
        time.sleep(0.1)
    return time.monotonic() - began


def _run_library(hosts, consumer, engine, stream, rows, duration,
                 id_base):
    settle = _settle(consumer, engine, stream)
    first = _committed(engine, stream)
    began = time.monotonic()
    _write(hosts, rows, duration, id_base)
    samples = []
    while time.monotonic() - began < duration:
        time.sleep(SAMPLE)
        status = consumer.status()[0]
        committed, published = _positions(engine, stream)
        applied = status['applied_seq'] or 0
        # (seconds, backlog tx, lag s, committed tx, applied tx,
        # published tx, heard tx, durable tx) since the run began: the
        # last three tell which stage holds the backlog (_where).
        samples.append((time.monotonic() - began, committed - applied,
                        status['lag_seconds'] or 0.0, committed - first,
                        applied - first, published - first,
                        (status['heard_seq'] or 0) - first,
                        (status['durable_seq'] or 0) - first))
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
            'lag_tx_slope': common.slope([(s[0], s[1]) for s in steady]),
            'lag_s_slope': common.slope([(s[0], s[2]) for s in steady]),
            'lag_tx_max': max([s[1] for s in samples] or [0]),
            'lag_s_max': max([s[2] for s in samples] or [0]),
            'drain_s': drain, 'settle_s': settle, 'samples': samples,
            'backlog_by_stage': _where(steady),
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
            conf.set_override('gc_tenure', True, 'consumer')
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
        stages = [r.get('backlog_by_stage') or {} for r in got]
        summary[rows] = {'baseline_tx_per_s': base, 'tx_per_s': tx,
                         'lag_s_slope': slope_s, 'lag_tx_slope': slope_tx,
                         'drain_s': drain,
                         'backlog_by_stage': {
                             stage: common.median([s[stage] for s in stages
                                                   if stage in s])
                             for stage in ('relay', 'bus', 'consumer',
                                           'unpersisted')
                             if any(stage in s for s in stages)}}
        label = 'single-row' if rows == 1 else '%d-row' % rows
        figures.append(common.figure(
            '2 keeping up, %s tx, %d writers: commit rate'
            % (label, WRITERS), tx, 'tx/s', base, 'no middleware'))
        figures.append(common.figure(
            '2 keeping up, %s tx: row-deltas/s' % label, tx * rows,
            'rows/s', base * rows, 'no middleware',
            target=(('value', '>=', MIN_ROW_DELTAS) if rows == 100
                    else None)))
        figures.append(common.figure(
            '2 keeping up, %s tx: consumer lag slope' % label, slope_s,
            's/s', target=('value', '<=', MAX_SLOPE)))
        figures.append(common.figure(
            '2 keeping up, %s tx: drain after the writers stop' % label,
            drain, 's', target=('value', '<=', MAX_DRAIN)))
    return {'name': 'keeping_up', 'title': 'Keeping up',
            'figures': figures,
            'data': {'writers': WRITERS, 'duration_s': duration,
                     'repetitions': reps, 'summary': summary,
                     'runs': results}}


def plot(result, plt):
    data = result['data']
    fig, axes = plt.subplots(2, len(SIZES), figsize=(11, 6.5),
                             squeeze=False)
    for col, rows in enumerate(SIZES):
        run = data['runs'][str(rows)] if str(rows) in data['runs'] else \
            data['runs'][rows]
        top, bottom = axes[0][col], axes[1][col]
        base = common.median([r['tx_per_s'] for r in run['baseline']])
        end = max([got['samples'][-1][0] for got in run['library']
                   if got['samples']] or [data['duration_s']])
        top.plot([0, end], [0, base * end], color='black', linestyle='--',
                 label='baseline: no middleware, %.0f tx/s' % base)
        for i, got in enumerate(run['library']):
            samples = got['samples']
            if not samples or len(samples[0]) < 5:
                continue
            times = [0.0] + [s[0] for s in samples]
            line, = top.plot(times, [0] + [s[3] for s in samples],
                             label='rep %d: committed, %.0f tx/s'
                             % (i + 1, got['tx_per_s']))
            top.plot(times, [0] + [s[4] for s in samples],
                     color=line.get_color(), linestyle=':',
                     label='rep %d: applied by the consumer' % (i + 1))
            bottom.plot([s[0] for s in samples], [s[2] for s in samples],
                        color=line.get_color(),
                        label='rep %d: lag (slope %.3f s/s, drain %.1f s)'
                        % (i + 1, got['lag_s_slope'], got['drain_s']))
        bottom.plot([0, end], [0, MAX_SLOPE * end], color='tab:red',
                    linestyle='--',
                    label='target: slope <= %g s/s' % MAX_SLOPE)
        top.set_ylim(bottom=0)
        bottom.set_ylim(bottom=0)
        top.set_ylabel('transactions since the run began')
        top.set_title('%d-row transactions, %d writers: transactions'
                      % (rows, data['writers']))
        bottom.set_xlabel('seconds since the run began')
        bottom.set_ylabel('consumer lag, seconds')
        bottom.set_title('%d-row transactions: consumer lag (s)' % rows)
        top.legend(fontsize=7)
        bottom.legend(fontsize=7)
    fig.tight_layout()
    return {'keeping_up.png': fig}
