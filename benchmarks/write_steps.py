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

"""Figure 1, step by step: where the write path's time goes.

::

    python -m benchmarks.write_steps [--backends postgresql,mysql]
        [--transactions 40] [--repetitions 40]
        [--modes capture_only,outbox_no_relay,outbox,direct]
        [--against /path/to/another/checkout] [--output FILE]

The workload and the worker processes are figure 1's
(:mod:`benchmarks.write_path`): one writer, 5-change ORM transactions.
The steps, each in a worker of its own, interleaved in blocks with the
order rotating every repetition:

``baseline``         no middleware
``capture_only``     the session listeners, a sink that writes nothing
``outbox_no_relay``  the listeners and the outbox ``INSERT``, no relay
``outbox``           ``install()`` with the relay in process
``direct``           ``install()`` with direct delivery

Per step: the median wall-clock time and the median writer-thread CPU
time (``time.thread_time``) per transaction, and the paired ratios to
the baseline of the same repetition (median, and the 10th-90th
percentile range). With ``--against DIR`` every step but the baseline
also runs from the source tree ``DIR`` (another checkout or an
extracted commit, as ``step@against``), interleaved with the same
blocks, and the ratio this tree / that tree is reported per step: a
paired before/after comparison of a change. Results go to
``--output`` (JSON; nothing is written into ``benchmarks/results``
unless asked).
"""

import argparse
import json
import os
import statistics
import sys
import time
import uuid

from benchmarks import write_path

STEPS = ('capture_only', 'outbox_no_relay', 'outbox', 'direct')


def _quantile(values, q):
    values = sorted(values)
    pos = q * (len(values) - 1)
    low = int(pos)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (pos - low)


def _summary(ratios):
    return {'median': round(statistics.median(ratios), 4),
            'p10': round(_quantile(ratios, 0.1), 4),
            'p90': round(_quantile(ratios, 0.9), 4)}


def measure(backend, transactions, repetitions, modes=STEPS, against=None):
    """Interleaved samples of every step (and of ``against``'s)."""
    url, drop = write_path._database(backend)
    drops = [drop]
    exchange = 'bench_%s' % uuid.uuid4().hex[:10]
    workers = []
    try:
        write_path._create_outbox(url)
        if against:
            # The other tree's workers write tables of the same names:
            # a database of their own on the same server.
            other, drop = write_path._database(backend)
            drops.append(drop)
            write_path._create_outbox(other)
        workers.append(write_path._Worker('baseline', url, exchange))
        for mode in modes:
            workers.append(write_path._Worker(mode, url, exchange))
            if against:
                w = write_path._Worker(mode, other, exchange,
                                       root=against)
                w.mode = mode + '@against'
                workers.append(w)
        for w in workers:
            w.run(max(20, transactions // 2))
        wall = {w.mode: [] for w in workers}
        cpu = {w.mode: [] for w in workers}
        for rep in range(repetitions):
            order = workers[rep % len(workers):] + \
                workers[:rep % len(workers)]
            for w in order:
                wall[w.mode].append(w.run(transactions) / transactions)
                cpu[w.mode].append((w.cpu or 0.0) / transactions)
    finally:
        for w in workers:
            w.close()
        for drop in drops:
            drop()
        write_path._cleanup_broker(exchange)
    out = {}
    for mode in wall:
        row = out[mode] = {
            'ms': round(statistics.median(wall[mode]) * 1e3, 4),
            'cpu_ms': round(statistics.median(cpu[mode]) * 1e3, 4),
            'ratio': _summary([a / b for a, b in zip(
                wall[mode], wall['baseline'])]),
            'cpu_ratio': _summary([a / b for a, b in zip(
                cpu[mode], cpu['baseline'])]),
        }
        other = mode + '@against'
        if other in wall:
            row['vs_against'] = _summary([a / b for a, b in zip(
                wall[mode], wall[other])])
            row['cpu_vs_against'] = _summary([a / b for a, b in zip(
                cpu[mode], cpu[other])])
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--backends', default=','.join(write_path.BACKENDS))
    parser.add_argument('--transactions', type=int, default=40)
    parser.add_argument('--repetitions', type=int, default=40)
    parser.add_argument('--modes', default=','.join(STEPS))
    parser.add_argument('--against', default=None)
    parser.add_argument('--output', default=None)
    args = parser.parse_args(argv)
    modes = tuple(m for m in args.modes.split(',') if m)
    unknown = set(modes) - set(write_path.MODES + write_path.EXTRA_MODES)
    if unknown or 'baseline' in modes:
        parser.error('unknown or baseline modes: %s'
                     % ', '.join(sorted(unknown | {'baseline'} & set(modes))))
    began = time.monotonic()
    results = {'benchmark': 'write_steps', 'against': args.against,
               'transactions_per_sample': args.transactions,
               'repetitions': args.repetitions, 'backends': {}}
    for backend in args.backends.split(','):
        got = measure(backend, args.transactions, args.repetitions, modes,
                      args.against)
        results['backends'][backend] = got
        print('%s: median ms/tx, writer CPU ms/tx, paired ratio to '
              'baseline [p10-p90]' % backend)
        for mode, row in got.items():
            line = '  %-26s %7.3f ms %7.3f cpu  %.3fx [%.2f-%.2f]' % (
                mode, row['ms'], row['cpu_ms'], row['ratio']['median'],
                row['ratio']['p10'], row['ratio']['p90'])
            if 'vs_against' in row:
                va, vc = row['vs_against'], row['cpu_vs_against']
                line += '  this/against %.3f [%.2f-%.2f] cpu %.3f' % (
                    va['median'], va['p10'], va['p90'], vc['median'])
            print(line)
    results['elapsed_s'] = round(time.monotonic() - began, 1)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)),
                    exist_ok=True)
        with open(args.output, 'w') as f:
            json.dump(results, f, indent=2, sort_keys=True)
            f.write('\n')
        print('written %s' % args.output)
    return 0


if __name__ == '__main__':
    sys.exit(main())
