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

"""Figure 7, consumer restart with 10,000 deltas pending.

A host process (:mod:`benchmarks.host`, PostgreSQL) publishes a table of
100,000 rows (20,000 with ``--quick``). A push consumer (state store on
PostgreSQL, ``persist_rows`` on) syncs and is stopped; while it is down
the host commits 1,000 transactions of 10 row updates (10,000 row
deltas, waiting in the consumer's durable queue). Then:

* resume: the consumer restarts on its state store and its queue;
* re-snapshot (baseline): a consumer with an empty state store and a
  new queue pulls the table.

Each is timed from ``start()`` until it is synced and has applied the
host's last sequence number. Medians over the repetitions. Each run's
data also holds the breakdown: ``start_seconds`` (``start()`` itself,
which on a resume loads the state store into the cache), the rest
being the catch-up, ``cpu_seconds`` (the process's CPU time over the
run: on a loaded machine the wall time exceeds it) and ``messages``
(received by the stream, heartbeats included: how the relay packed the
1,000 transactions). A restarted
consumer is a new process: before each timed start the stopped consumer
is dropped and the garbage of the previous steps collected, so neither
side pays for objects a real restart would not have.
"""

import gc
import time

import sqlalchemy as sa

from benchmarks import common
from oslo_publish import outbox

TRANSACTIONS = 1000
ROWS_PER_TX = 10
TARGET_FASTER = 5.0


def _last_seq(engine, stream):
    with engine.connect() as conn:
        return conn.execute(sa.select(outbox.streams.c.last_seq).where(
            outbox.streams.c.stream == stream)).scalar() or 0


def _time_to_caught_up(conf, target, stream_engine, stream):
    """Start a consumer; seconds until synced at the host's position.

    Returns the consumer, those seconds, its status and the breakdown:
    ``start_seconds`` (``start()`` itself: the listener started and,
    on a resume, the state store loaded into the cache), ``cpu_seconds``
    (this process's CPU time meanwhile: the consumer's threads, the
    polling loop here is negligible) and ``messages`` (messages the
    stream received, heartbeats included).
    """
    from consumer import service
    gc.collect()
    consumer = service.Consumer(conf)
    cpu = time.process_time()
    began = time.perf_counter()
    consumer.start()
    started = time.perf_counter() - began
    try:
        if not consumer.wait_synced(600):
            raise RuntimeError('consumer did not sync')
        deadline = time.monotonic() + 600
        while (consumer.status()[0]['applied_seq'] or 0) < target:
            if time.monotonic() > deadline:
                raise RuntimeError('consumer did not catch up')
            time.sleep(0.01)
        elapsed = time.perf_counter() - began
        cpu = time.process_time() - cpu
        status = consumer.status()[0]
    except Exception:
        consumer.stop()
        raise
    breakdown = {'start_seconds': started, 'cpu_seconds': cpu,
                 'messages': status.get('received', 0)}
    return consumer, elapsed, status, breakdown


def _medians(entries):
    """Median of each breakdown figure over a side's runs."""
    return {name: common.median([entry[name] for entry in entries])
            for name in ('start_seconds', 'cpu_seconds', 'messages')}


def run(opts):
    rows = 20000 if opts.quick else 100000
    reps = 1 if opts.quick else 3
    nm = common.names('restart')
    runs = {'resume': [], 'resnapshot': []}
    with common.database() as url, common.database() as state_url:
        common.create_host_tables(url, rows)
        engine = sa.create_engine(url)
        host = common.HostProcess(url, nm)
        consumer = None
        try:
            conf = common.consumer_conf(state_url, nm)
            consumer, _, _, _ = _time_to_caught_up(conf, 0, engine,
                                                   nm['stream'])
            for rep in range(reps):
                # A restarted consumer does not keep the old one's cache.
                if consumer is not None:
                    consumer.stop()
                    consumer = None
                host.command('write', kind='update', rows=ROWS_PER_TX,
                             threads=2, tx=TRANSACTIONS, table_rows=rows)
                done = host.command('wait')
                host.command('idle')
                target = _last_seq(engine, nm['stream'])
                consumer, elapsed, status, breakdown = _time_to_caught_up(
                    conf, target, engine, nm['stream'])
                # Stopped (the next repetition restarts it) so that the
                # re-snapshot does not share the process with it either.
                consumer.stop()
                consumer = None
                runs['resume'].append(dict(
                    breakdown, seconds=elapsed, committed=done['committed'],
                    resyncs={k: v for k, v in status.items()
                             if k.startswith('resync_')}))
                fresh_nm = dict(nm, pool=common.names('restart')['pool'])
                with common.database() as fresh_url:
                    other, elapsed, _, breakdown = _time_to_caught_up(
                        common.consumer_conf(fresh_url, fresh_nm), target,
                        engine, nm['stream'])
                    other.stop()
                    other = None
                common.cleanup_broker(fresh_nm, exchange=False)
                runs['resnapshot'].append(dict(breakdown, seconds=elapsed))
        finally:
            if consumer is not None:
                consumer.stop()
            host.close()
            engine.dispose()
            common.cleanup_broker(nm)
    resume = common.median([r['seconds'] for r in runs['resume']])
    full = common.median([r['seconds'] for r in runs['resnapshot']])
    snapshots = sum(r['resyncs'].get('resync_initial', 0) +
                    r['resyncs'].get('resync_gap', 0)
                    for r in runs['resume'])
    return {
        'name': 'restart', 'title': 'Consumer restart',
        'figures': [
            common.figure(
                '7 restart with %d deltas pending (%s-row table)'
                % (TRANSACTIONS * ROWS_PER_TX, '{:,}'.format(rows)),
                resume, 's', full, 'full re-snapshot', inverse=True,
                ratio_label='x faster',
                target=('ratio', '>=', TARGET_FASTER)),
            common.figure(
                '7 restart: snapshots taken while resuming', snapshots,
                'snapshots', target=('value', '<=', 0))],
        'data': {'rows': rows, 'transactions': TRANSACTIONS,
                 'breakdown': {side: _medians(entries)
                               for side, entries in runs.items()},
                 'rows_per_tx': ROWS_PER_TX, 'repetitions': reps,
                 'runs': runs}}


def plot(result, plt):
    data = result['data']
    fig, ax = plt.subplots(figsize=(6, 3.5))
    resume = [r['seconds'] for r in data['runs']['resume']]
    full = [r['seconds'] for r in data['runs']['resnapshot']]
    ax.bar(['resume from\nstate store', 'full\nre-snapshot'],
           [common.median(resume), common.median(full)],
           color=['tab:green', 'tab:gray'])
    for i, values in enumerate((resume, full)):
        ax.scatter([i] * len(values), values, color='black', s=10,
                   zorder=3)
    ax.axhline(common.median(full) / TARGET_FASTER, color='tab:red',
               linestyle='--', linewidth=1.0,
               label='target: resume >= %gx faster than re-snapshot'
               % TARGET_FASTER)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    ax.set_ylabel('seconds to synced and caught up')
    ax.set_title('Restart with %d deltas pending (%s rows), seconds' % (
        data['transactions'] * data['rows_per_tx'],
        '{:,}'.format(data['rows'])))
    fig.tight_layout()
    return {'restart.png': fig}
