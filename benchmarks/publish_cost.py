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

"""What one delta message costs the relay to publish (figure 3's step).

::

    python -m benchmarks.publish_cost [--messages 2000] [--repetitions 4]
        [--against /path/to/another/checkout]

The relay's publishing step alone, on the real RabbitMQ: one
single-transaction delta message (one update of the latency benchmark's
row shape) at a time through
:func:`oslo_publish.relay.publishing.publish_entries` and the
:class:`~oslo_publish.publisher.Publisher`, each waiting for the
broker's confirm, as the relay does. Per block of ``--messages``: the
publishing thread's CPU time per message (``time.thread_time``: what the
relay's cycle takes from the interpreter), the wall-clock time per
message, and, in a separate profiled pass, the Python function calls
per message (a count that does not depend on the machine's load). With
``--against DIR`` the same runs from the source tree ``DIR`` too, in
alternating worker processes, and the ratios this tree / that tree of
the medians are printed. Nothing is written into ``benchmarks/results``.
"""

import argparse
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import time


def _worker(messages, profile):
    from oslo_messaging import get_notification_transport

    from benchmarks import common
    from oslo_publish import metrics as metrics_mod
    from oslo_publish import publisher as publisher_mod
    from oslo_publish.relay import publishing

    nm = common.names('pubcost')
    conf = common.host_conf('sqlite://', nm)
    transport = get_notification_transport(conf)
    pub = publisher_mod.Publisher(conf, transport, nm['stream'])
    metrics = metrics_mod.HostMetrics()
    opts = conf.oslo_publish
    row = common.row(17)
    change = {'op': 'update', 'table': common.TABLE, 'key': [17],
              'changed': ['value'], 'before': row,
              'after': dict(row, value=1)}
    tables = {common.TABLE: {'pk': ['id'], 'version': 'v' * 16}}
    text = json.dumps({'changes': [change], 'tables': tables})

    def one(seq):
        tx = {'seq': seq, 'txid': 'tx-%d' % seq,
              'committed_at': '2026-01-01T00:00:00.000001+00:00',
              'changes': [change]}
        _done, failure = publishing.publish_entries(
            pub, metrics, nm['stream'], opts.signing_key,
            opts.max_message_bytes, [(seq, tx, tables)], epoch='e' * 32,
            bounds=[publishing.payload_bound(text, tx['txid'])])
        if failure is not None:
            raise failure

    try:
        for seq in range(1, 201):  # connect, declare, warm up
            one(seq)
        cpu, wall = time.thread_time(), time.perf_counter()
        for seq in range(messages):
            one(seq)
        result = {'cpu_ms': (time.thread_time() - cpu) * 1e3 / messages,
                  'wall_ms': (time.perf_counter() - wall) * 1e3 / messages}
        if profile:
            prof = cProfile.Profile()
            prof.enable()
            for seq in range(200):
                one(seq)
            prof.disable()
            result['calls'] = pstats.Stats(prof).total_calls / 200.0
    finally:
        transport.cleanup()
        common.cleanup_broker(nm)
    return result


def _run(tree, messages, profile):
    env = dict(os.environ, PYTHONPATH=tree)
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), '--worker',
         '--messages', str(messages)] + (['--profile'] if profile else []),
        cwd=tree, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _medians(runs):
    return {key: statistics.median(r[key] for r in runs if key in r)
            for key in ('cpu_ms', 'wall_ms', 'calls')}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--messages', type=int, default=2000)
    parser.add_argument('--repetitions', type=int, default=4)
    parser.add_argument('--against')
    parser.add_argument('--worker', action='store_true')
    parser.add_argument('--profile', action='store_true')
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.messages, args.profile)))
        return
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = {'this': here}
    if args.against:
        trees['against'] = os.path.abspath(args.against)
    runs = {name: [] for name in trees}
    for rep in range(args.repetitions):
        order = sorted(trees, reverse=bool(rep % 2))
        for name in order:
            runs[name].append(_run(trees[name], args.messages, rep == 0))
    medians = {name: _medians(got) for name, got in runs.items()}
    for name, med in medians.items():
        print('%-8s cpu %.3f ms/message, wall %.3f ms/message, '
              '%.0f Python calls/message' % (
                  name, med['cpu_ms'], med['wall_ms'], med['calls']))
    if 'against' in medians:
        print('ratio this/against: cpu %.2f, wall %.2f, calls %.2f' % tuple(
            medians['this'][k] / medians['against'][k]
            for k in ('cpu_ms', 'wall_ms', 'calls')))


if __name__ == '__main__':
    main()
