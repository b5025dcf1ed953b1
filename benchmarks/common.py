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

"""Shared pieces of the benchmarks: model, configuration, statistics.

Every benchmark gets databases of its own (created and dropped like the
functional tests' :class:`tests.base.DatabaseFixture`) and exchange,
topic, stream and pool names of its own (:func:`names`).
"""

import contextlib
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import uuid

from oslo_config import cfg
import sqlalchemy as sa
from sqlalchemy import orm

from tests import base as test_base

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRANSPORT_URL = test_base.TRANSPORT_URL

Base = orm.declarative_base()


class Item(Base):
    """The benchmark table: a small, instance-like row."""

    __tablename__ = 'bench_items'
    __table_args__ = {'mysql_engine': 'InnoDB'}
    id = sa.Column(sa.Integer, primary_key=True, autoincrement=False)
    name = sa.Column(sa.String(64), nullable=False)
    value = sa.Column(sa.Integer, nullable=False, default=0)
    host = sa.Column(sa.String(32))
    note = sa.Column(sa.String(255))


TABLE = Item.__tablename__


def row(ident, value=0):
    """The seed row ``ident``."""
    return {'id': ident, 'name': 'item-%d' % ident, 'value': value,
            'host': 'host-%d' % (ident % 50),
            'note': 'seeded row number %d of the benchmark' % ident}


def names(prefix):
    """Unique exchange / topic / stream / pool names of one benchmark."""
    tag = uuid.uuid4().hex[:8]
    return {key: 'bench_%s_%s_%s' % (prefix, key[0], tag)
            for key in ('exchange', 'topic', 'stream', 'pool')}


@contextlib.contextmanager
def database(backend='postgresql'):
    """A fresh database of its own; yields its URL; dropped afterwards."""
    with test_base.DatabaseFixture(backend) as db:
        yield db.url


def create_host_tables(url, rows=0, chunk=10000):
    """Create the benchmark table and the outbox; insert ``rows`` rows.

    The rows are inserted with Core on a plain connection (not captured).
    """
    from oslo_publish import migration
    engine = sa.create_engine(url)
    try:
        Base.metadata.create_all(engine)
        migration.upgrade(engine)
        done = 0
        while done < rows:
            batch = [row(n) for n in range(done + 1,
                                           min(rows, done + chunk) + 1)]
            with engine.begin() as conn:
                conn.execute(Item.__table__.insert(), batch)
            done += len(batch)
    finally:
        engine.dispose()


def _bus_conf(options, nm):
    """A ConfigOpts with ``options`` registered, on the run's exchange."""
    from oslo_messaging import transport

    from consumer import listener
    conf = cfg.ConfigOpts()
    options.register_opts(conf)
    conf.register_opts(transport._transport_opts)
    listener.prepare_transport_conf(conf)
    conf([], project='oslo_publish_bench', default_config_files=[])
    conf.set_override('transport_url', TRANSPORT_URL)
    conf.set_override('control_exchange', nm['exchange'])
    return conf


def host_conf(url, nm, page_size=1000, delivery='outbox',
              heartbeat=1.0, snapshot_server=True):
    """A ConfigOpts for ``oslo_publish.install`` in a benchmark host."""
    from oslo_publish import options
    conf = _bus_conf(options, nm)
    for name, value in (('tables', [TABLE]), ('stream', nm['stream']),
                        ('topics', [nm['topic']]), ('delivery', delivery),
                        ('heartbeat_interval', heartbeat),
                        ('relay_poll_interval', 0.2),
                        ('snapshot_page_size', page_size),
                        ('snapshot_server', snapshot_server)):
        conf.set_override(name, value, 'oslo_publish')
    return conf


def consumer_conf(state_url, nm, persist_rows=True, driver='oslo_publish',
                  poll_url=None, poll_interval=60.0):
    """A ConfigOpts for :class:`consumer.service.Consumer`."""
    from consumer import options
    conf = _bus_conf(options, nm)
    for name, value in (('driver', driver), ('streams', [nm['stream']]),
                        ('topics', [nm['topic']]), ('pool', nm['pool']),
                        ('persist_rows', persist_rows),
                        ('gap_timeout', 2.0),
                        ('inactivity_timeout', max(35.0,
                                                   poll_interval * 3)),
                        ('snapshot_timeout', 60.0),
                        ('resync_backoff_min', 0.05),
                        ('resync_backoff_max', 1.0)):
        conf.set_override(name, value, 'consumer')
    conf.set_override('connection', state_url, 'consumer_database')
    if poll_url:
        conf.set_override('connection', poll_url, 'consumer_poll')
        conf.set_override('tables', [TABLE], 'consumer_poll')
        conf.set_override('interval', poll_interval, 'consumer_poll')
        conf.set_override('stream', nm['stream'], 'consumer_poll')
    return conf


def cleanup_broker(nm, exchange=True):
    """Delete the benchmark's queues and exchange (best effort).

    ``exchange=False`` deletes only the consumer's pool queue (the host
    still uses the exchange).
    """
    import kombu
    try:
        with kombu.Connection(amqp_url()) as conn:
            channel = conn.channel()
            if not exchange:
                channel.queue_delete(nm['pool'])
                return
            for queue_name in (nm['pool'], nm['topic'] + '.info'):
                channel.queue_delete(queue_name)
            channel.exchange_delete(nm['exchange'])
    except Exception as exc:  # noqa: best effort
        print('broker cleanup failed: %s' % exc, file=sys.stderr)


def amqp_url():
    return TRANSPORT_URL.replace('rabbit://', 'amqp://', 1)


# ----------------------------------------------------------- statistics

def median(values):
    return statistics.median(values) if values else None


def percentile(values, fraction):
    """Nearest-rank percentile of ``values`` (``fraction`` in 0..1)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(int(round(fraction * len(ordered) + 0.5)) - 1, 0)
    return ordered[min(rank, len(ordered) - 1)]


def slope(points):
    """Least-squares slope of ``[(x, y), ...]``."""
    if len(points) < 2:
        return 0.0
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    den = sum((x - mx) ** 2 for x, _ in points)
    if not den:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in points) / den


def ratio(value, baseline):
    if value is None or not baseline:
        return None
    return value / baseline


_OPS = {'<=': lambda a, b: a <= b, '>=': lambda a, b: a >= b}


def figure(name, value, unit, baseline=None, baseline_label=None,
           inverse=False, ratio_label=None, target=None, limit=None,
           **extra):
    """One row of the results table, its ratio and "met" computed.

    ``ratio`` is always a ratio of the two figures shown: ``value /
    baseline``, or ``baseline / value`` with ``inverse`` (for "x fewer",
    "x faster", "x fresher"); ``ratio_label`` names it (default "x
    baseline"). ``target`` is ``(of, op, bound)``: ``of`` is ``'ratio'``
    or ``'value'``, ``op`` ``'<='`` or ``'>='``; ``met`` is that
    comparison of the measured figure, None without a target or a
    figure. ``limit`` is a hard limit ``(of, op, bound)`` reported as
    ``within_limit`` the same way.
    """
    if inverse:
        ratio_value = ratio(baseline, value)
    else:
        ratio_value = ratio(value, baseline)
    fig = {'figure': name, 'value': value, 'unit': unit,
           'baseline': baseline, 'baseline_label': baseline_label,
           'ratio': ratio_value,
           'ratio_label': ratio_label or ('x baseline' if baseline
                                          is not None else None),
           'ratio_is': ('baseline / value' if inverse else
                        'value / baseline'),
           'target': None, 'met': None}
    fig.update(extra)
    for key, spec in (('target', target), ('limit', limit)):
        if spec is None:
            continue
        of, op, bound = spec
        measured = ratio_value if of == 'ratio' else value
        fig[key + '_spec'] = {'of': of, 'op': op, 'bound': bound}
        text = ('%s %gx' % (op, bound) if of == 'ratio' else
                '%s %g %s' % (op, bound, unit))
        if of == 'ratio' and ratio_label and ratio_label != 'x baseline':
            text += ratio_label[1:]
        ok = None if measured is None else bool(_OPS[op](measured, bound))
        if key == 'target':
            fig['target'], fig['met'] = text, ok
        else:
            fig['limit'], fig['within_limit'] = text, ok
    return fig


def memory_kb(pid='self'):
    """``{'hwm_kb': VmHWM, 'rss_kb': VmRSS}`` of a process."""
    found = {}
    with open('/proc/%s/status' % pid) as status:
        for line in status:
            key, _, rest = line.partition(':')
            if key in ('VmHWM', 'VmRSS'):
                found[key.lower()[2:] + '_kb'] = int(rest.split()[0])
    return found


# ---------------------------------------------------------- host process

class HostProcess(object):
    """``python -m benchmarks.host`` in a process of its own.

    JSON commands on stdin, one JSON answer line each on stdout (see
    :mod:`benchmarks.host`).
    """

    def __init__(self, url, nm, *extra):
        args = [sys.executable, '-m', 'benchmarks.host', '--db', url,
                '--exchange', nm['exchange'], '--stream', nm['stream'],
                '--topic', nm['topic']] + list(extra)
        self.log_path = os.path.join(
            tempfile.gettempdir(), 'bench_host_%s.log' % uuid.uuid4().hex[:8])
        self._err = open(self.log_path, 'w')
        self.proc = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._err,
                                     text=True)
        self._lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.expect(120)

    def _read(self):
        for line in self.proc.stdout:
            self._lines.put(json.loads(line))
        self._lines.put(None)

    def expect(self, timeout):
        try:
            reply = self._lines.get(timeout=timeout)
        except queue.Empty:
            reply = None
        if reply is None:
            raise RuntimeError('benchmark host process failed, see %s'
                               % self.log_path)
        return reply

    def send(self, cmd, **kwargs):
        kwargs['cmd'] = cmd
        self.proc.stdin.write(json.dumps(kwargs) + '\n')
        self.proc.stdin.flush()

    def command(self, cmd, timeout=600, **kwargs):
        self.send(cmd, **kwargs)
        return self.expect(timeout)

    def close(self):
        if self.proc.poll() is None:
            try:
                self.command('quit', timeout=60)
            except (RuntimeError, OSError):
                pass
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._err.close()
        if self.proc.returncode == 0:
            os.unlink(self.log_path)


@contextlib.contextmanager
def consumer(conf, **kwargs):
    """A started :class:`consumer.service.Consumer`, stopped afterwards."""
    from consumer import service
    instance = service.Consumer(conf, **kwargs)
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()
