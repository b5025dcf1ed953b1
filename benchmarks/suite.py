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

"""``python -m benchmarks``: every benchmark, results file, table, plots.

::

    python -m benchmarks [--quick] [--only NAME[,NAME...]]
        [--duration SECONDS] [--sync-rows N] [--output DIR]

Runs the benchmarks in order (figures 1-8 of doc/source/benchmarks.rst)
on the real services of the machine. A full run writes
``benchmarks/results/results.json``, ``benchmarks/results/results.md``,
the PNG plots and the same table for the docs (``results.rst.inc``) in
``doc/source/_static/bench/``. ``--quick`` (short runs, a smoke test)
never touches those: it writes ``results.json``, ``results.md``,
``results.rst.inc`` and the plots to ``benchmarks/results/quick/``
(ignored by git), and ``--output DIR`` writes them all to DIR. With
``--only`` the other benchmarks' earlier results in the same place are
kept. A benchmark that fails is reported as such; the others still run.
"""

import argparse
import contextlib
import datetime
import gc
import importlib
import json
import logging
import os
import platform
import sys
import tempfile
import time
import traceback

from benchmarks import common

BENCHMARKS = ('write_path', 'keeping_up', 'latency', 'initial_sync',
              'polling', 'readers', 'restart', 'capture_backends')
MODULES = {'write_path': 'benchmarks.write_overhead'}
RESULTS_DIR = os.path.join(common.ROOT, 'benchmarks', 'results')
QUICK_DIR = os.path.join(RESULTS_DIR, 'quick')
PLOTS_DIR = os.path.join(common.ROOT, 'doc', 'source', '_static', 'bench')

#: What every column of the results table means (Markdown and docs).
COLUMNS = (
    ('figure', 'what is measured (figure number of the benchmarks page)'),
    ('this library', 'the measured figure (a median over the '
     'repetitions, unless the row says otherwise)'),
    ('baseline', 'the same workload without the library or with the '
     'alternative named in brackets, measured in the same run'),
    ('ratio', 'this library / baseline, or baseline / this library for '
     '"x fewer", "x faster", "x fresher" and "x cheaper": always the '
     'ratio of the two figures shown in the row'),
    ('target', 'the goal; a hard limit is given in brackets'),
    ('met', 'whether the figure or ratio meets the target, computed from '
     'the figures of this run'),
)


def _module(name):
    return importlib.import_module(MODULES.get(name, 'benchmarks.' + name))


def _fmt(value, digits=3):
    if value is None:
        return '-'
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if isinstance(value, (int, float)):
        if abs(value) >= 1000:
            return '{:,.0f}'.format(value)
        return ('%%.%dg' % digits) % value
    return str(value)


def _baseline(fig):
    if fig.get('baseline') is None:
        return '-'
    return '%s %s (%s)' % (_fmt(fig['baseline']), fig.get('unit') or '',
                           fig.get('baseline_label') or '-')


def _ratio(fig):
    if fig.get('ratio') is None:
        return '-'
    return '%s %s' % (_fmt(fig['ratio']), fig.get('ratio_label') or 'x')


def _target(fig):
    text = fig.get('target') or '-'
    if fig.get('limit'):
        text += ' (hard limit %s: %s)' % (
            fig['limit'], _fmt(fig.get('within_limit')))
    return text


def _met(fig):
    return '-' if fig.get('met') is None else _fmt(fig['met'])


def _cells(fig):
    unit = fig.get('unit') or ''
    return [fig['figure'], ('%s %s' % (_fmt(fig['value']), unit)).strip(),
            _baseline(fig), _ratio(fig), _target(fig), _met(fig)]


def markdown(results):
    """The Markdown table of every headline figure."""
    lines = ['| %s |' % ' | '.join(name for name, _ in COLUMNS),
             '|%s' % ('---|' * len(COLUMNS))]
    for name in BENCHMARKS:
        got = results['benchmarks'].get(name)
        if got is None:
            continue
        if got.get('error'):
            lines.append('| %s | failed: %s | | | | |'
                         % (name, got['error'].splitlines()[-1][:80]))
            continue
        for fig in got['figures']:
            lines.append('| %s |' % ' | '.join(
                c.replace('|', '\\|') for c in _cells(fig)))
    header = ['# oslo.publish benchmark results', '',
              'Produced by `%s` on %s (%s CPUs, Python %s), %s.'
              % (results['command'].strip(), results['host'],
                 results['cpus'], results['python'], results['finished']),
              '']
    header += ['Columns:', '']
    header += ['* **%s**: %s.' % (name, text) for name, text in COLUMNS]
    header.append('')
    return '\n'.join(header + lines) + '\n'


def rst_table(results):
    """The same table as :func:`markdown`, as an RST list-table."""
    lines = ['.. list-table::', '   :header-rows: 1', '']
    lines.append('   * - ' + COLUMNS[0][0])
    lines.extend('     - ' + name for name, _ in COLUMNS[1:])
    for name in BENCHMARKS:
        got = results['benchmarks'].get(name)
        if got is None:
            continue
        if got.get('error'):
            cells = [name, 'failed', '', '', '', '']
        else:
            cells = None
        rows = [cells] if cells else [_cells(f) for f in got['figures']]
        for cells in rows:
            cells = [c.replace('*', '\\*') or '-' for c in cells]
            lines.append('   * - ' + cells[0])
            lines.extend('     - ' + c for c in cells[1:])
    lines += ['', 'Produced by ``%s`` (%s CPUs, Python %s), %s.'
              % (results['command'].strip(), results['cpus'],
                 results['python'], results['finished'])]
    return '\n'.join(lines) + '\n'


def _plots(name, got, plots_dir):
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt
    os.makedirs(plots_dir, exist_ok=True)
    written = []
    for filename, fig in _module(name).plot(got, plt).items():
        fig.savefig(os.path.join(plots_dir, filename), dpi=90)
        plt.close(fig)
        written.append(filename)
    return written


def output_dirs(quick, output=None):
    """``(results_dir, plots_dir)`` of a run.

    Only a full run without ``output`` writes the committed results and
    the docs' plots; a quick run goes to :data:`QUICK_DIR`.
    """
    if output is None and quick:
        output = QUICK_DIR
    if output is None:
        return RESULTS_DIR, PLOTS_DIR
    return output, os.path.join(output, 'plots')


@contextlib.contextmanager
def _log_to_file():
    """Send the log records of this process to a file while a run lasts.

    The benchmarks run the library (consumer, relay, py-amqp, PyMySQL
    replication) in this process without configuring logging, so
    Python's last-resort handler would print their warnings (a channel
    closed while a message was in flight, a reconnect) between the
    figures. They go to a file in the temporary directory instead, whose
    path the run prints first (removed again when nothing was logged);
    the host processes already write theirs to files of their own
    (:class:`benchmarks.common.HostProcess`). The root logger keeps its
    level (WARNING): the file gets what the last-resort handler would
    have printed, at the same cost.
    """
    handle, path = tempfile.mkstemp(prefix='oslo_publish_bench_',
                                    suffix='.log')
    os.close(handle)
    handler = logging.FileHandler(path, delay=True)
    handler.setFormatter(logging.Formatter(
        '%(asctime)s %(process)d %(levelname)s %(name)s %(message)s'))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        handler.close()
        if not os.path.getsize(path):
            os.unlink(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true',
                        help='short runs, small tables (a smoke test)')
    parser.add_argument('--only', help='comma-separated benchmark names: '
                        + ', '.join(BENCHMARKS))
    parser.add_argument('--duration', type=float,
                        help='seconds per keeping-up run (default 20, '
                        'quick 4)')
    parser.add_argument('--sync-rows', type=int,
                        help='rows of the initial-sync table (default '
                        '1000000, quick 100000)')
    parser.add_argument('--readers-rows', type=int, default=100000,
                        help='rows of the readers benchmark cache')
    parser.add_argument('--output', '--results-dir', dest='output',
                        help='directory of the results and plots (default: '
                        'the committed places; with --quick %s)'
                        % os.path.relpath(QUICK_DIR, common.ROOT))
    parser.add_argument('--no-plots', action='store_true')
    opts = parser.parse_args(argv)
    results_dir, plots_dir = output_dirs(opts.quick, opts.output)
    if opts.duration is None:
        opts.duration = 4.0 if opts.quick else 20.0
    if opts.sync_rows is None:
        opts.sync_rows = 100000 if opts.quick else 1000000
    names = opts.only.split(',') if opts.only else list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error('unknown benchmark(s): %s' % ', '.join(unknown))
    path = os.path.join(results_dir, 'results.json')
    results = {'benchmarks': {}}
    if opts.only and os.path.exists(path):
        with open(path) as f:
            results = json.load(f)
    began = time.monotonic()
    with _log_to_file() as log_path:
        print('library log: %s' % log_path, flush=True)
        for name in names:
            print('== %s' % name, flush=True)
            # The previous benchmark's stopped consumers are garbage in
            # reference cycles (a 1,000,000-row cache is millions of
            # objects): collected here, not by a full collection in the
            # middle of this benchmark's timed window.
            gc.collect()
            started = time.monotonic()
            try:
                got = _module(name).run(opts)
            except Exception:  # noqa: report the failure, run the others
                traceback.print_exc()
                got = {'name': name, 'error': traceback.format_exc(),
                       'figures': []}
            got['elapsed_s'] = round(time.monotonic() - started, 1)
            got['quick'] = opts.quick
            if not got.get('error') and not opts.no_plots:
                got['plots'] = _plots(name, got, plots_dir)
            results['benchmarks'][name] = got
            for fig in got['figures']:
                print('  %-45s %10s %-9s vs %10s  ratio %s' % (
                    fig['figure'], _fmt(fig['value']), fig.get('unit') or '',
                    _fmt(fig.get('baseline')), _fmt(fig.get('ratio'))),
                    flush=True)
            print('  (%.0f s)' % got['elapsed_s'], flush=True)
    results.update({
        'command': 'python -m benchmarks ' + ' '.join(argv if argv is not
                                                      None else
                                                      sys.argv[1:]),
        'host': platform.node(), 'cpus': os.cpu_count(),
        'python': platform.python_version(),
        'finished': datetime.datetime.now(datetime.timezone.utc).strftime(
            '%Y-%m-%d %H:%M UTC'),
        'elapsed_s': round(time.monotonic() - began, 1)})
    os.makedirs(results_dir, exist_ok=True)
    with open(path, 'w') as f:
        json.dump(results, f, indent=1, sort_keys=True, default=str)
        f.write('\n')
    with open(os.path.join(results_dir, 'results.md'), 'w') as f:
        f.write(markdown(results))
    os.makedirs(plots_dir, exist_ok=True)
    with open(os.path.join(plots_dir, 'results.rst.inc'), 'w') as f:
        f.write(rst_table(results))
    print('written %s (%.0f s)' % (path, results['elapsed_s']))
    failed = [n for n in names if results['benchmarks'][n].get('error')]
    return 1 if failed else 0
