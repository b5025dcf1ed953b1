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

"""Figure 1, write-path overhead, plus the log-based floor.

The modes ``baseline``, ``outbox``, ``direct`` and ``continuum`` are
measured by :func:`benchmarks.write_path.measure` (interleaved blocks,
paired ratios) on PostgreSQL and MariaDB. PostgreSQL logical decoding
(:mod:`benchmarks.logical`: the baseline workload on a database with a
``test_decoding`` slot streamed by a reader process) is measured the
same way against a baseline worker of its own, both on a private
PostgreSQL cluster started with ``wal_level = logical``
(:mod:`benchmarks.pgcluster`); the benchmark fails when that cluster
cannot start.
"""

import statistics
import subprocess
import sys

from benchmarks import common
from benchmarks import pgcluster
from benchmarks import write_path

TARGETS = {'outbox': 1.15, 'outbox_standalone': 1.15, 'direct': 1.05}
NAMES = {'continuum': 'sqlalchemy-continuum (peer)',
         'outbox_standalone': 'outbox, standalone relay'}
COLORS = ('tab:blue', 'tab:cyan', 'tab:green', 'tab:gray', 'tab:olive')
LABELS = {'postgresql': 'PostgreSQL', 'mysql': 'MariaDB'}


class _LogicalWorker(write_path._Worker):

    def __init__(self, url):
        self.mode = 'logical'
        self.proc = subprocess.Popen(
            [sys.executable, '-m', 'benchmarks.logical', '--worker', '--url',
             url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, cwd=common.ROOT)
        line = self.proc.stdout.readline().strip()
        if line != 'ready':
            raise RuntimeError('logical worker did not start (%r)' % line)


def _logical(transactions, repetitions):
    """Paired ratio of the logical-decoding worker to a baseline worker."""
    with pgcluster.cluster() as server, \
            pgcluster.database(server) as base_url, \
            pgcluster.database(server) as slot_url:
        workers = []
        try:
            workers = [write_path._Worker('baseline', base_url, 'unused'),
                       _LogicalWorker(slot_url)]
            for w in workers:
                w.run(max(20, transactions // 5))
            samples = {'baseline': [], 'logical': []}
            for rep in range(repetitions):
                for w in (workers if rep % 2 else workers[::-1]):
                    samples[w.mode].append(w.run(transactions) / transactions)
        finally:
            for w in workers:
                w.close()
    paired = statistics.median(
        [x / b for x, b in zip(samples['logical'], samples['baseline'])])
    medians = {m: statistics.median(s) for m, s in samples.items()}
    return {'ratio_to_baseline': paired,
            'ratio_of_medians': medians['logical'] / medians['baseline'],
            'median_ms_per_transaction': {
                m: statistics.median(s) * 1000.0 for m, s in samples.items()},
            'samples_ms': {m: [x * 1000.0 for x in s]
                           for m, s in samples.items()}}


def _modes(data=None):
    """The measured modes but the baseline (of ``data`` when given)."""
    if data is not None:
        first = next(iter(data['backends'].values()))
        present = first['median_ms_per_transaction']
        return [m for m in write_path.MODES
                if m != 'baseline' and m in present]
    return [m for m in write_path.available_modes() if m != 'baseline']


def run(opts):
    transactions, repetitions = (20, 6) if opts.quick else (40, 15)
    data = {'transactions_per_sample': transactions,
            'repetitions': repetitions, 'backends': {}}
    if 'continuum' not in write_path.available_modes():
        data['continuum'] = ('not measured: SQLAlchemy-Continuum is not '
                             'installed (pip install .[bench])')
        print(data['continuum'], file=sys.stderr)
    figures = []
    for backend in write_path.BACKENDS:
        got = write_path.measure(backend, transactions, repetitions)
        data['backends'][backend] = got
        base_ms = got['median_ms_per_transaction']['baseline']
        for mode in _modes():
            target = TARGETS.get(mode)
            figures.append(common.figure(
                '1 write path %s, %s' % (NAMES.get(mode, mode),
                                         LABELS[backend]),
                got['median_ms_per_transaction'][mode], 'ms/tx', base_ms,
                'no middleware',
                target=('ratio', '<=', target) if target else None,
                paired_ratio=got['ratio_to_baseline'][mode]))
    got = _logical(transactions, max(repetitions // 2, 4))
    data['logical'] = got
    figures.append(common.figure(
        '1 write path, PostgreSQL logical decoding (floor)',
        got['median_ms_per_transaction']['logical'], 'ms/tx',
        got['median_ms_per_transaction']['baseline'],
        'no slot, same private cluster',
        paired_ratio=got['ratio_to_baseline']))
    return {'name': 'write_path', 'title': 'Write-path overhead',
            'figures': figures, 'data': data}


def plot(result, plt):
    data = result['data']
    fig, ax = plt.subplots(figsize=(8, 4))
    modes = _modes(data)
    width = 0.8 / (len(modes) + 1)
    for i, backend in enumerate(write_path.BACKENDS):
        got = data['backends'][backend]
        ratios = got.get('ratio_of_medians', got['ratio_to_baseline'])
        for j, mode in enumerate(modes):
            ax.bar(i + (j - len(modes) / 2.0) * width, ratios[mode], width,
                   color=COLORS[j % len(COLORS)],
                   label=NAMES.get(mode, mode) if i == 0 else None)
    if isinstance(data.get('logical'), dict):
        got = data['logical']
        ax.bar(0 + (len(modes) / 2.0) * width,
               got.get('ratio_of_medians', got['ratio_to_baseline']), width,
               color='tab:purple',
               label='PG logical decoding (private cluster)')
    ax.axhline(1.0, color='black', linewidth=1.0,
               label='baseline: no middleware (1.0)')
    ax.axhline(TARGETS['outbox'], color='tab:blue', linestyle='--',
               linewidth=1.0,
               label='target outbox <= %gx' % TARGETS['outbox'])
    ax.axhline(TARGETS['direct'], color='tab:green', linestyle=':',
               linewidth=1.2,
               label='target direct <= %gx' % TARGETS['direct'])
    # Room above the bars for the legend.
    ax.set_ylim(0, max(bar.get_height() for bar in ax.patches) * 1.6)
    ax.set_xticks(range(len(write_path.BACKENDS)))
    ax.set_xticklabels([LABELS[b] for b in write_path.BACKENDS])
    ax.set_ylabel('median time per transaction /\nmedian of the baseline')
    ax.set_title('Write-path overhead, 5 row changes per transaction '
                 '(ratio of medians, x)')
    ax.legend(fontsize=7, loc='upper left', ncol=2)
    fig.tight_layout()
    return {'write_path.png': fig}
