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

"""Figure 5, versus polling (what Congress, Watcher and Vitrage do).

A 100,000-row table on PostgreSQL (20,000 with ``--quick``) where 1% of
the rows change per polling interval, as single-row update transactions
spread evenly (a host process, :mod:`benchmarks.host`, with
``oslo_publish.install``). Time is scaled: the polling interval is 10 s
(2 s with ``--quick``) instead of 60 s, with the same 1% of the rows
changing per interval, so "per minute" below means "per polling
interval". Two consumers, each with a change handler, run one after the
other in this process on the same workload (side by side, the poller's
table scans would slow the push consumer down through the GIL):

* polling: the consumer's ``poll`` driver with the ``sql`` source
  reading the whole table with keyset pagination every interval (its
  rows counted by a subclass of the source);
* this library: the push consumer on RabbitMQ.

Measured over the same window: rows read from the host database (for
the library: rows returned by every SELECT of the host process's engine,
minus the rows the writer itself loaded; the relay's and the capture's
reads remain), bytes moved (the library: bodies of the messages on the
bus, read from a tap queue bound to the stream's topic; polling: the
rows it read, in the wire's JSON encoding), and staleness: for every
committed change, the time until the consumer's copy held it or a later
value of the row.
"""

import collections
import json
import threading
import time
import uuid

from benchmarks import common

ROWS = 100000
SHARE = 0.01
TARGET_READS = 50.0
TARGET_FRESHER = 100.0


class _Seen(object):

    def __init__(self):
        self.by_id = collections.defaultdict(list)
        self._lock = threading.Lock()

    def note(self, ident, value, when):
        with self._lock:
            self.by_id[ident].append((when, value))

    def staleness(self, commits, horizon):
        """Seconds from each commit until its value (or a later) is seen."""
        got, missing = [], 0
        for ident, value, committed in commits:
            seen = [t for t, v in self.by_id.get(ident, ()) if v >= value]
            if seen:
                got.append(max(min(seen) - committed, 0.0))
            else:
                missing += 1
                got.append(horizon - committed)
        return got, missing


def _handler(seen):
    from consumer import handlers

    class Handler(handlers.ChangeHandler):
        def on_update(self, table, key, before, after):
            seen.note(key[0], after['value'], time.time())

    return Handler()


def _counting_source(conf):
    from consumer.drivers import poll
    from oslo_publish import wire

    class CountingSource(poll.SQLSource):
        rows_read = 0
        bytes_read = 0

        def _pages(self, table, pk):
            for row in super()._pages(table, pk):
                self.rows_read += 1
                self.bytes_read += len(json.dumps(wire.encode_row(row)))
                yield row

    return CountingSource(conf=conf)


class _Tap(object):
    """A queue bound to the stream's topic: counts the bytes published."""

    def __init__(self, nm):
        import kombu
        self.name = 'bench_tap_%s' % uuid.uuid4().hex[:8]
        self._conn = kombu.Connection(common.amqp_url())
        self._channel = self._conn.channel()
        self._channel.queue_declare(queue=self.name, auto_delete=False)
        self._channel.queue_bind(queue=self.name, exchange=nm['exchange'],
                                 routing_key=nm['topic'] + '.info')

    def drain(self):
        count = size = 0
        while True:
            message = self._channel.basic_get(queue=self.name, no_ack=True)
            if message is None:
                break
            count += 1
            size += len(message.body)
        return count, size

    def close(self):
        try:
            self._channel.queue_delete(self.name)
        finally:
            self._conn.release()


def run(opts):
    rows, interval = (20000, 2.0) if opts.quick else (ROWS, 10.0)
    intervals = 3 if opts.quick else 4
    changes = int(rows * SHARE)
    nm = common.names('poll')
    poll_nm = dict(nm, stream=nm['stream'] + '_polled',
                   pool=common.names('poll')['pool'])
    seen = {'polling': _Seen(), 'library': _Seen()}
    spec = {'kind': 'update', 'rows': 1, 'threads': 1,
            'rate': changes / interval, 'duration': intervals * interval,
            'table_rows': rows, 'record': True}
    done, window = {}, {}
    with common.database() as url, common.database() as push_state, \
            common.database() as poll_state:
        common.create_host_tables(url, rows)
        host = common.HostProcess(url, nm)
        tap = None
        try:
            # Phase 1: this library (the push consumer alone).
            with common.consumer(common.consumer_conf(push_state, nm)) \
                    as pusher:
                if not pusher.wait_synced(300):
                    raise RuntimeError('push consumer did not sync')
                pusher.add_handler('staleness', _handler(seen['library']))
                tap = _Tap(nm)
                tap.drain()
                host.command('reset')
                began = time.time()
                host.command('write', **spec)
                done['library'] = host.command('wait')
                time.sleep(1.0)
                window['library'] = time.time() - began
                counters = host.command('counters')
                messages, bus_bytes = tap.drain()
                push_status = pusher.status()
                horizon = {'library': time.time()}
            # Phase 2: polling (the poll driver alone), same workload.
            poll_conf = common.consumer_conf(
                poll_state, poll_nm, driver='poll', poll_url=url,
                poll_interval=interval)
            source = _counting_source(poll_conf)
            with common.consumer(poll_conf,
                                 driver_kwargs={'source': source}) as poller:
                if not poller.wait_synced(300):
                    raise RuntimeError('poll consumer did not sync')
                poller.add_handler('staleness', _handler(seen['polling']))
                source.rows_read = source.bytes_read = 0
                began = time.time()
                host.command('write', **spec)
                done['polling'] = host.command('wait')
                # Let the last changes reach the poller too.
                time.sleep(interval * 1.5)
                window['polling'] = time.time() - began
                poll_rows, poll_bytes = source.rows_read, source.bytes_read
                horizon['polling'] = time.time()
        finally:
            if tap is not None:
                tap.close()
            host.close()
            common.cleanup_broker(nm)
            common.cleanup_broker(poll_nm, exchange=False)
    per = {name: w / interval for name, w in window.items()}
    lib_rows = counters['select_rows'] - counters['writer_reads']
    stale = {}
    for name in ('polling', 'library'):
        got, missing = seen[name].staleness(done[name]['commits'],
                                            horizon[name])
        stale[name] = {'p50_s': common.percentile(got, 0.5),
                       'p99_s': common.percentile(got, 0.99),
                       'missing': missing, 'samples': got}
    fewer = common.ratio(poll_rows / per['polling'],
                         max(lib_rows, 1) / per['library'])
    fresher = common.ratio(stale['polling']['p50_s'],
                           stale['library']['p50_s'])
    figures = [
        {'figure': '5 vs polling: rows read from the host DB per interval',
         'value': lib_rows / per['library'], 'unit': 'rows',
         'baseline': poll_rows / per['polling'],
         'baseline_label': 'polling every %gs' % interval,
         'ratio': fewer, 'ratio_label': 'x fewer',
         'target': '>= %gx fewer' % TARGET_READS,
         'met': fewer >= TARGET_READS},
        {'figure': '5 vs polling: bytes moved per interval',
         'value': bus_bytes / per['library'], 'unit': 'bytes',
         'baseline': poll_bytes / per['polling'],
         'baseline_label': 'rows read by the poller (JSON)',
         'ratio': common.ratio(poll_bytes / per['polling'],
                               max(bus_bytes, 1) / per['library']),
         'ratio_label': 'x fewer', 'target': None, 'met': None},
        {'figure': '5 vs polling: median staleness',
         'value': stale['library']['p50_s'], 'unit': 's',
         'baseline': stale['polling']['p50_s'],
         'baseline_label': 'polling every %gs' % interval,
         'ratio': fresher, 'ratio_label': 'x fresher',
         'target': '>= %gx fresher' % TARGET_FRESHER,
         'met': fresher >= TARGET_FRESHER},
        {'figure': '5 vs polling: p99 staleness',
         'value': stale['library']['p99_s'], 'unit': 's',
         'baseline': stale['polling']['p99_s'],
         'baseline_label': 'polling every %gs' % interval,
         'ratio': common.ratio(stale['polling']['p99_s'],
                               stale['library']['p99_s']),
         'ratio_label': 'x fresher', 'target': None, 'met': None},
    ]
    return {'name': 'polling', 'title': 'Versus polling',
            'figures': figures,
            'data': {'rows': rows, 'interval_s': interval,
                     'scaled_from_s': 60.0, 'intervals': intervals,
                     'changes_per_interval': changes,
                     'window_s': window,
                     'committed': {n: d['committed'] for n, d in done.items()},
                     'library_rows_read': lib_rows,
                     'host_select_rows': counters['select_rows'],
                     'writer_reads': counters['writer_reads'],
                     'polling_rows_read': poll_rows,
                     'bus_messages': messages, 'bus_bytes': bus_bytes,
                     'polling_bytes': poll_bytes,
                     'push_consumer_status': push_status,
                     'staleness': stale}}


def plot(result, plt):
    data = result['data']
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    per = {n: w / data['interval_s'] for n, w in data['window_s'].items()}
    left.bar(['this library', 'polling'],
             [data['library_rows_read'] / per['library'],
              data['polling_rows_read'] / per['polling']],
             color=['tab:green', 'tab:gray'])
    left.set_yscale('log')
    left.set_ylabel('rows read per interval (log)')
    left.set_title('Host database reads (%s rows, 1%%/interval)'
                   % '{:,}'.format(data['rows']))
    for name, color in (('library', 'tab:green'), ('polling', 'tab:gray')):
        values = sorted(data['staleness'][name]['samples'])
        if values:
            right.plot(values, [(i + 1) / float(len(values))
                                for i in range(len(values))],
                       color=color, label=name)
    right.set_xscale('log')
    right.set_xlabel('staleness, seconds (log)')
    right.set_ylabel('fraction of changes')
    right.set_title('Staleness CDF (poll every %gs)' % data['interval_s'])
    right.legend()
    fig.tight_layout()
    return {'polling.png': fig}
