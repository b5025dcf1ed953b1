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

"""Figure 4, initial sync of a large table.

The benchmark table on PostgreSQL holds ``--sync-rows`` rows (1,000,000;
100,000 with ``--quick``). A host process (:mod:`benchmarks.host`:
``oslo_publish.install`` with the snapshot server, pages of 1000 rows)
serves it; a push consumer in this process starts with an empty state
store (PostgreSQL) and is timed from ``start()`` until ``wait_synced()``
returns (the snapshot is readable in the cache) and until
``wait_durable()`` returns (its rows and position are committed in the
state store, which the consumer writes in the background after it is
synced), with ``persist_rows`` off (cache only; the state store gets the
positions) and on (cache and mirrored rows in the state store). Both
times are figures. Baseline: a keyset-paginated SELECT of
the same rows (pages of 1000, ordered by primary key) into Python dicts
in this process. Runs alternate; medians over the repetitions (the
consumer pulls of a table of 500,000 rows or more run once each: they
take minutes on a small machine).

Host peak memory: ``VmHWM`` of the host process after it served the
snapshot, for a table ten times smaller and for the full one; it must
not grow with the table (ratio <= 1.25).
"""

import time

import sqlalchemy as sa

from benchmarks import common

PAGE = 1000
TARGET = 2.0
MAX_MEMORY_GROWTH = 1.25


def _select(url):
    """Seconds to read the table with keyset pagination into dicts."""
    engine = sa.create_engine(url)
    table = common.Item.__table__
    began = time.perf_counter()
    rows = []
    after = None
    with engine.connect() as conn:
        while True:
            query = sa.select(table).order_by(table.c.id).limit(PAGE)
            if after is not None:
                query = query.where(table.c.id > after)
            page = [dict(r._mapping) for r in conn.execute(query)]
            rows.extend(page)
            if len(page) < PAGE:
                break
            after = page[-1]['id']
    elapsed = time.perf_counter() - began
    count = len(rows)
    del rows
    engine.dispose()
    return elapsed, count


def _stored_rows(state_url):
    """Mirrored rows committed in the state store."""
    engine = sa.create_engine(state_url)
    try:
        with engine.connect() as conn:
            return conn.exec_driver_sql(
                'SELECT count(*) FROM consumer_rows').scalar()
    finally:
        engine.dispose()


def _pull(nm, persist):
    """Seconds until a fresh consumer is synced and until it is durable.

    Also its RSS growth and the rows the state store holds once durable.
    """
    run_nm = dict(nm, pool=common.names('sync')['pool'])
    with common.database() as state_url:
        conf = common.consumer_conf(state_url, run_nm, persist_rows=persist)
        before = common.memory_kb()['rss_kb']
        began = time.perf_counter()
        with common.consumer(conf) as consumer:
            if not consumer.wait_synced(1800):
                raise RuntimeError('initial sync did not finish')
            synced = time.perf_counter() - began
            if not consumer.wait_durable(1800):
                raise RuntimeError('initial snapshot never became durable')
            durable = time.perf_counter() - began
            count = consumer.view().count(common.TABLE)
            grown = common.memory_kb()['rss_kb'] - before
        stored = _stored_rows(state_url)
        common.cleanup_broker(run_nm, exchange=False)
    return {'seconds': synced, 'durable_seconds': durable, 'rows': count,
            'stored_rows': stored, 'consumer_rss_growth_kb': grown}


def _serve(rows, reps, lib_reps, persist_modes):
    """Host process over a table of ``rows`` rows; timed pulls."""
    nm = common.names('sync')
    runs = {'select': [], 'persist_off': [], 'persist_on': []}
    with common.database() as url:
        common.create_host_tables(url, rows)
        host = common.HostProcess(url, nm, '--page-size', str(PAGE))
        try:
            started = host.command('memory')
            for rep in range(reps):
                elapsed, count = _select(url)
                runs['select'].append({'seconds': elapsed, 'rows': count})
                if rep >= lib_reps:
                    continue
                for persist in persist_modes:
                    runs['persist_on' if persist else 'persist_off'].append(
                        _pull(nm, persist))
            served = host.command('memory')
        finally:
            host.close()
            common.cleanup_broker(nm)
    for name, got in runs.items():
        for entry in got:
            if entry['rows'] != rows:
                raise RuntimeError('%s read %d rows of %d'
                                   % (name, entry['rows'], rows))
            stored = entry.get('stored_rows')
            if stored is not None and stored != (
                    rows if name == 'persist_on' else 0):
                raise RuntimeError('%s stored %d rows of %d'
                                   % (name, stored, rows))
    return {'rows': rows, 'runs': runs, 'host_started': started,
            'host_served': served}


def run(opts):
    rows = opts.sync_rows
    reps = 2 if opts.quick else 3
    # A million-row pull takes minutes here: one repetition of each.
    lib_reps = 1 if rows >= 500000 else reps
    large = _serve(rows, reps, lib_reps, (False, True))
    small = _serve(rows // 10, 1, 1, (False,))
    med = {name: common.median([r['seconds'] for r in got])
           for name, got in large['runs'].items()}
    med_durable = {name: common.median([r['durable_seconds'] for r in got])
                   for name, got in large['runs'].items()
                   if name != 'select'}
    figures = []
    for mode in ('persist_off', 'persist_on'):
        for label, value in (('synced', med[mode]),
                             ('durable', med_durable[mode])):
            figures.append(common.figure(
                '4 initial sync %s rows, persist_rows %s, %s'
                % ('{:,}'.format(rows), mode.split('_')[1], label),
                value, 's', med['select'], 'keyset SELECT into dicts',
                target=('ratio', '<=', TARGET)))
    hwm_small = small['host_served']['hwm_kb'] / 1024.0
    hwm_large = large['host_served']['hwm_kb'] / 1024.0
    figures.append(common.figure(
        '4 host peak memory, %s vs %s rows' % (
            '{:,}'.format(rows), '{:,}'.format(rows // 10)),
        hwm_large, 'MiB', hwm_small, '{:,} rows'.format(rows // 10),
        ratio_label='x the smaller table',
        target=('ratio', '<=', MAX_MEMORY_GROWTH)))
    return {'name': 'initial_sync', 'title': 'Initial sync',
            'figures': figures,
            'data': {'rows': rows, 'page_size': PAGE, 'repetitions': reps,
                     'library_repetitions': lib_reps,
                     'medians_s': med, 'durable_medians_s': med_durable,
                     'large': large, 'small': small}}


def plot(result, plt):
    data = result['data']
    med = data['medians_s']
    durable = data.get('durable_medians_s', {})
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    names = ('select', 'persist_off', 'persist_on')
    labels = ('keyset SELECT\ninto dicts', 'consumer\npersist_rows off',
              'consumer\npersist_rows on')
    left.bar(labels, [med[n] for n in names],
             color=['tab:gray', 'tab:green', 'tab:blue'])
    later = [max(durable.get(n, med[n]) - med[n], 0.0) for n in names]
    left.bar(labels, later, bottom=[med[n] for n in names],
             color='tab:blue', alpha=0.35,
             label='after synced (readable), until durable')
    left.axhline(med['select'] * TARGET, color='tab:red', linestyle='--',
                 linewidth=1.0, label='target: <= %gx the keyset SELECT'
                 % TARGET)
    left.set_ylim(bottom=0)
    left.set_ylabel('seconds')
    left.set_title('Initial sync of {:,} rows (s)'.format(data['rows']))
    left.legend(fontsize=7)
    sizes = [data['small']['rows'], data['large']['rows']]
    right.bar(['{:,} rows'.format(s) for s in sizes],
              [data['small']['host_served']['hwm_kb'] / 1024.0,
               data['large']['host_served']['hwm_kb'] / 1024.0],
              color='tab:purple')
    right.axhline(data['small']['host_served']['hwm_kb'] / 1024.0 *
                  MAX_MEMORY_GROWTH, color='tab:red', linestyle='--',
                  linewidth=1.0, label='target: <= %gx the smaller table'
                  % MAX_MEMORY_GROWTH)
    right.set_ylim(bottom=0)
    right.set_ylabel('MiB (VmHWM)')
    right.set_title('Host process peak memory (MiB)')
    right.legend(fontsize=7)
    fig.tight_layout()
    return {'initial_sync.png': fig}
