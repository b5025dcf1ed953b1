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

Rows read from the host database per interval (at 1% of the rows
changed per interval):

* this library: rows returned by every reading statement of the host
  process's engine (a SELECT, the relay's ``BEGIN; SELECT ... FOR
  UPDATE`` and ``WITH ... RETURNING`` claim; rows handed back by an
  INSERT/UPDATE/DELETE ... RETURNING are the statement's own writes, no
  extra read: listed apart, not counted)
  from the moment
  the writers start until the relay has published everything they
  committed, minus the rows the writers themselves loaded to update
  them. What remains is the library's own reading: the capture's
  re-read of the changed rows (their after-images), the relay's reads
  of outbox entries, of the stream row it locks and of the outbox
  aggregates (highest seq, backlog count), heartbeats included. The
  split by statement kind is recorded (``library_rows_by_kind``). Per
  interval: those rows per committed change times the changes per
  interval of the workload (a loaded machine's writers may commit fewer
  than asked; the rows divided by the writers' time in intervals are
  kept as ``library_rows_per_interval_measured``).
* polling: the rows of one complete poll (every poll reads the whole
  table, and a poller "every interval" polls once per interval). The
  rows the poll source returned while the writers ran, divided the same
  way as the library's, are kept too
  (``polling_rows_per_interval_measured``): the poll driver sleeps the
  interval after each poll, so on a loaded machine it polls less often
  than once per interval and that rate is lower.

Also bytes moved per interval, taken the same way (the library: bodies
of the messages on the bus, read from a tap queue bound to the stream's
topic, per committed change times the changes per interval; polling:
the rows of one complete poll, in the wire's JSON encoding), and
staleness: for every committed
change, the time until the consumer's copy held it or a later value of
the row.
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
        scans = 0
        #: Rows and bytes of every complete scan of the table.
        complete = []

        def _pages(self, table, pk):
            self.scans += 1
            rows = size = 0
            for row in super()._pages(table, pk):
                encoded = len(json.dumps(wire.encode_row(row)))
                self.rows_read += 1
                self.bytes_read += encoded
                rows += 1
                size += encoded
                yield row
            self.complete.append((rows, size))

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
                host.command('write', **spec)
                done['library'] = host.command('wait')
                if not host.command('idle')['idle']:
                    raise RuntimeError('the relay did not drain')
                counters = host.command('counters')
                window['library'] = done['library']['elapsed']
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
                source.rows_read = source.bytes_read = source.scans = 0
                source.complete = []
                host.command('write', **spec)
                done['polling'] = host.command('wait')
                window['polling'] = done['polling']['elapsed']
                poll_rows, poll_bytes = source.rows_read, source.bytes_read
                poll_scans = source.scans
                scans = list(source.complete)
                # Staleness only: the horizon for the last changes is the
                # poll after them.
                time.sleep(interval * 1.5)
                horizon['polling'] = time.time()
        finally:
            if tap is not None:
                tap.close()
            host.close()
            common.cleanup_broker(nm)
            common.cleanup_broker(poll_nm, exchange=False)
    per = {name: w / interval for name, w in window.items()}
    # A poller "every interval" reads the whole table once per interval:
    # its figure per interval is one complete scan. (The poll driver
    # sleeps the interval after each poll, so under load it polls less
    # often than that; its measured rate is kept as well.)
    if scans:
        poll_per_interval = common.median([r for r, _ in scans])
        poll_bytes_per_interval = common.median([b for _, b in scans])
    else:
        poll_per_interval = poll_rows / per['polling']
        poll_bytes_per_interval = poll_bytes / per['polling']
    by_kind = dict(counters.get('by_kind') or {})
    writer_reads = counters['writer_reads']
    lib_rows = counters['select_rows'] - writer_reads
    table_reads = by_kind.pop('SELECT %s' % common.TABLE, 0)
    if table_reads:
        by_kind['SELECT %s: capture re-read of changed rows'
                % common.TABLE] = table_reads - writer_reads
    committed_changes = done['library']['committed']
    stale = {}
    for name in ('polling', 'library'):
        got, missing = seen[name].staleness(done[name]['commits'],
                                            horizon[name])
        stale[name] = {'p50_s': common.percentile(got, 0.5),
                       'p99_s': common.percentile(got, 0.99),
                       'missing': missing, 'samples': got}
    label = 'polling every %gs' % interval
    # The library's reads grow with the changes; on a loaded machine the
    # writers may commit fewer than the 1% per interval asked for, so its
    # reads per interval are taken at the workload's rate of changes.
    per_change = max(lib_rows, 1) / float(max(committed_changes, 1))
    figures = [
        common.figure(
            '5 vs polling: rows read from the host DB per interval',
            per_change * changes, 'rows',
            poll_per_interval, label, inverse=True,
            ratio_label='x fewer', target=('ratio', '>=', TARGET_READS)),
        common.figure(
            '5 vs polling: rows read per committed change',
            per_change, 'rows',
            poll_per_interval / float(changes), label,
            inverse=True, ratio_label='x fewer'),
        common.figure(
            '5 vs polling: bytes moved per interval',
            max(bus_bytes, 1) / float(max(committed_changes, 1)) * changes,
            'bytes',
            poll_bytes_per_interval, 'rows read by the poller (JSON)',
            inverse=True, ratio_label='x fewer'),
        common.figure(
            '5 vs polling: median staleness', stale['library']['p50_s'],
            's', stale['polling']['p50_s'], label, inverse=True,
            ratio_label='x fresher',
            target=('ratio', '>=', TARGET_FRESHER)),
        common.figure(
            '5 vs polling: p99 staleness', stale['library']['p99_s'], 's',
            stale['polling']['p99_s'], label, inverse=True,
            ratio_label='x fresher'),
    ]
    return {'name': 'polling', 'title': 'Versus polling',
            'figures': figures,
            'data': {'rows': rows, 'interval_s': interval,
                     'scaled_from_s': 60.0, 'intervals': intervals,
                     'changes_per_interval': changes,
                     'window_s': window,
                     'committed': {n: d['committed'] for n, d in done.items()},
                     'library_rows_read': lib_rows,
                     'library_rows_per_change': per_change,
                     'library_rows_per_interval_measured':
                         lib_rows / per['library'],
                     'library_rows_by_kind': by_kind,
                     'host_select_rows': counters['select_rows'],
                     'writer_reads': writer_reads,
                     'polling_rows_read': poll_rows,
                     'polling_scans': poll_scans,
                     'polling_complete_scans': scans,
                     'polling_rows_per_interval': poll_per_interval,
                     'polling_rows_per_interval_measured':
                         poll_rows / per['polling'],
                     'bus_messages': messages, 'bus_bytes': bus_bytes,
                     'polling_bytes': poll_bytes,
                     'push_consumer_status': push_status,
                     'staleness': stale}}


def plot(result, plt):
    data = result['data']
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    per = {n: w / data['interval_s'] for n, w in data['window_s'].items()}
    values = [data.get('library_rows_per_change', 0) *
              data['changes_per_interval']
              if 'library_rows_per_change' in data
              else data['library_rows_read'] / per['library'],
              data.get('polling_rows_per_interval',
                       data['polling_rows_read'] / per['polling'])]
    bars = left.bar(['this library', 'polling every %gs'
                     % data['interval_s']], values,
                    color=['tab:green', 'tab:gray'])
    for bar, value in zip(bars, values):
        left.annotate('{:,.0f}'.format(value),
                      (bar.get_x() + bar.get_width() / 2.0, value),
                      textcoords='offset points', xytext=(0, 3),
                      ha='center', fontsize=8)
    left.axhline(values[1] / TARGET_READS, color='tab:red', linestyle='--',
                 linewidth=1.0, label='target: %gx fewer than polling'
                 % TARGET_READS)
    left.set_ylim(0, max(values) * 1.15)
    left.set_ylabel('rows read per interval')
    left.set_title('Host database reads per interval, rows\n'
                   '(%s-row table, 1%% changed per interval)'
                   % '{:,}'.format(data['rows']))
    left.legend(fontsize=7)
    for name, color in (('library', 'tab:green'), ('polling', 'tab:gray')):
        values = sorted(data['staleness'][name]['samples'])
        if values:
            right.plot(values, [(i + 1) / float(len(values))
                                for i in range(len(values))],
                       color=color, label=name)
    right.set_xscale('log')
    right.set_xlabel('staleness, seconds (log scale)')
    right.set_ylabel('fraction of changes')
    right.set_title('Staleness, cumulative fraction of changes\n'
                    '(seconds, log scale; poll every %gs)'
                    % data['interval_s'])
    right.legend()
    fig.tight_layout()
    return {'polling.png': fig}
