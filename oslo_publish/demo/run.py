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

"""Run the demo: a host service under load and a consumer mirroring it.

Embedded defaults need no services: SQLite files under ``--data-dir`` and
the in-process ``fake://`` bus. ``--connection`` and ``--transport-url``
run the same demo on PostgreSQL/MariaDB and RabbitMQ; ``--role host`` and
``--role consumer`` run the two halves as separate processes.
"""

import argparse
import hashlib
import datetime
import os
import statistics
import sys
import threading
import time
import uuid

from oslo_config import cfg
from oslo_log import log
import oslo_messaging
from oslo_messaging import transport as msg_transport
import sqlalchemy as sa
from sqlalchemy import orm

from oslo_publish.demo import checks
from oslo_publish.demo import models
from oslo_publish.demo import workload as demo_workload
from oslo_publish import wire

LOG = log.getLogger(__name__)


def stream_for(url):
    """The demo's stream name: one per host database.

    Two databases publishing one stream name would mix their sequence
    numbers in a consumer's queue; with a name per database, a consumer
    rejects the other database's messages as an unknown stream.
    """
    digest = hashlib.sha1(url.encode('utf-8')).hexdigest()[:8]
    return 'demo-%s' % digest


TOPIC = 'oslo_publish_demo'


DemoError = checks.DemoError

#: Seconds each half may take to stop before the demo exits anyway. A
#: half stops in about 1.5 s (listeners end their 1 s polls); a host cut
#: short leaves its snapshot server's queues on the broker.
STOP_TIMEOUT = 5.0


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog='oslo-publish-demo',
        description='A host service under a steady random workload and a '
                    'consumer mirroring it; ends with a verification '
                    'table.')
    p.add_argument('--duration', type=checks.seconds, default=15.0,
                   help='seconds of workload (default 15)')
    p.add_argument('--rate', type=checks.positive, default=40.0,
                   help='target transactions per second (default 40)')
    p.add_argument('--seed', type=int, default=1,
                   help='random seed of the workload (default 1)')
    p.add_argument('--writers', type=checks.count, default=2,
                   help='concurrent writer threads (default 2)')
    p.add_argument('--role', choices=('both', 'host', 'consumer'),
                   default='both',
                   help='run both halves here, or one of them')
    p.add_argument('--connection',
                   help='host database URL (default: SQLite file in '
                        '--data-dir), e.g. postgresql://u@h/db or '
                        'mysql+pymysql://root@127.0.0.1/demo')
    p.add_argument('--state-connection',
                   help='consumer state store URL (default: SQLite file '
                        'in --data-dir)')
    p.add_argument('--transport-url', default='fake://',
                   help='oslo.messaging URL (default fake://, in-process)')
    p.add_argument('--data-dir', default='demo-data',
                   help='directory of the default SQLite files')
    p.add_argument('--linger', type=checks.seconds, default=60.0,
                   help='--role host: seconds to keep relaying and '
                        'serving snapshots after the workload')
    p.add_argument('--converge-timeout', type=checks.seconds, default=60.0,
                   help='seconds to wait for the mirror to converge')
    p.add_argument('--verbose', action='store_true')
    args = p.parse_args(argv)
    if args.transport_url.startswith('fake') and args.role != 'both':
        p.error('--role host/consumer need a real bus: --transport-url '
                'rabbit://...')
    return args


# ---------------------------------------------------------------- set-up

_safe_url = checks.safe_url
_engine = checks.engine


def build_conf(args, data_dir, stream, state_url=None):
    from consumer import options as consumer_options
    from oslo_publish import options as host_options
    conf = cfg.ConfigOpts()
    log.register_options(conf)
    host_options.register_opts(conf)
    consumer_options.register_opts(conf)
    conf([], project='oslo_publish_demo', default_config_files=[])
    # Host and consumer declare the same exchange: their durability
    # settings must agree, so both read them from this one conf. The
    # demo's exchange is its own, so it takes the recommended setting:
    # durable queues, which survive a broker restart.
    from consumer import listener
    listener.prepare_transport_conf(conf)
    conf.set_override('amqp_durable_queues', True, 'oslo_messaging_rabbit')
    conf.set_override('tables', list(models.TABLES), 'oslo_publish')
    conf.set_override('stream', stream, 'oslo_publish')
    # Topic and exchange of the demo's own: queue names are shared by the
    # whole broker, and their durability is fixed by their first user.
    conf.set_override('topics', [TOPIC], 'oslo_publish')
    conf.set_override('topics', [TOPIC], 'consumer')
    conf.set_override('heartbeat_interval', 1.0, 'oslo_publish')
    conf.set_override('relay_poll_interval', 0.2, 'oslo_publish')
    conf.set_override('streams', [stream], 'consumer')
    conf.set_override('indexes', ['instances.host'], 'consumer')
    conf.set_override('inactivity_timeout', 10.0, 'consumer')
    # A pool of this run's own, deleted at exit: a fixed durable pool
    # would outlive the run and hand a later run the deltas of an
    # earlier host (rejected as unknown_publisher).
    conf.set_override('pool', pool_name(stream), 'consumer')
    conf.set_override('state_path', data_dir, 'consumer')
    conf.set_override('connection', state_url or
                      'sqlite:///%s' % os.path.join(
                          data_dir, 'consumer-state.sqlite'),
                      'consumer_database')
    return conf


def pool_name(stream):
    """The consumer's queue pool: one per run."""
    return 'oslo-publish-demo-%s-%s' % (stream, uuid.uuid4().hex[:8])


def delete_queues(args, names, if_unused=False):
    """Delete queues ``names`` on RabbitMQ at exit (best effort).

    :param if_unused: only a queue nobody consumes from (another process
        of the same stream may still serve it).
    """
    if not args.transport_url.startswith(('rabbit://', 'amqp://')):
        return
    import kombu
    first = args.transport_url.split('://', 1)[1].split(',')[0]
    for name in names:
        try:
            with kombu.Connection(
                    'amqp://' + first,
                    connect_timeout=checks.BROKER_TIMEOUT) as c:
                c.channel().queue_delete(name, if_unused=if_unused)
        except Exception:  # noqa: broad - best effort at exit
            LOG.debug('cannot delete queue %s', name, exc_info=True)


def delete_pool(conf, args):
    """Delete the run's pool queue on RabbitMQ (best effort)."""
    delete_queues(args, [conf.consumer.pool])


def delete_host_queues(args, stream):
    """Delete what a demo host leaves on RabbitMQ (best effort).

    The ``<topic>.info`` queue oslo.messaging declares for every
    notification topic (nobody reads it: consumers have their pools, so
    it only accumulates the runs' deltas) and the stream's shared
    snapshot queue unless another host process still serves it (each
    host database is a stream of its own, so a fresh ``--data-dir``
    would add one).
    """
    delete_queues(args, ['%s.info' % TOPIC])
    delete_queues(args, [wire.snapshot_topic(stream)], if_unused=True)


def stop_bounded(parts, timeout=STOP_TIMEOUT):
    """Stop ``parts`` in order, ``timeout`` each; True when all did."""
    def _stop():
        for part in parts:
            try:
                part.stop()
            except Exception:  # noqa: broad - best effort at exit
                LOG.debug('stop failed', exc_info=True)
    stopper = threading.Thread(target=_stop, name='demo-stop', daemon=True)
    stopper.start()
    stopper.join(timeout * len(parts))
    return not stopper.is_alive()


def transports(conf, args):
    """Notification and RPC transports sharing one driver.

    With ``fake://`` the bus lives inside the driver object, so host and
    consumer must share it; with RabbitMQ sharing is merely cheaper.
    """
    # An exchange of the demo's own: durability settings of an exchange
    # are fixed by whoever declared it first, and other programs on a
    # shared broker may have declared the default one differently.
    oslo_messaging.set_transport_defaults('oslo_publish_demo')
    rpc = oslo_messaging.get_rpc_transport(conf, url=args.transport_url)
    notify = msg_transport.NotificationTransport(rpc._driver)
    return notify, rpc


# ------------------------------------------------------------- the halves

class Host(object):
    """The demo host service: its tables, the middleware, the workload."""

    def __init__(self, conf, args, url, notify, rpc, stream):
        import oslo_publish
        from oslo_publish import migration
        from oslo_publish import outbox
        self.stream = stream
        self.engine = _engine(url, 'host')
        # The demo owns its database: every run starts from empty tables.
        models.Base.metadata.drop_all(self.engine)
        models.Base.metadata.create_all(self.engine)
        migration.upgrade(self.engine)
        # The stream's sequence carries on from earlier runs (a stream
        # never restarts at 1: messages of an earlier run may still wait
        # in the consumer's queue, and must stay older than the snapshot).
        with self.engine.begin() as conn:
            conn.execute(outbox.outbox.delete().where(
                outbox.outbox.c.stream == self.stream))
        self.sessionmaker = orm.sessionmaker(bind=self.engine)
        self.handle = oslo_publish.install(
            conf, self.sessionmaker, metadata=models.Base.metadata,
            transport=notify, rpc_transport=rpc)
        self.workload = demo_workload.Workload(
            self.sessionmaker, args.rate, args.seed, args.writers)

    def published(self):
        return self.handle.metrics.value(
            'oslo_publish_deltas_published_total', stream=self.stream)

    def backlog(self):
        return self.handle.metrics.value('oslo_publish_relay_backlog',
                                         stream=self.stream)

    def stop(self):
        self.workload.stop()
        self.handle.stop()
        self.engine.dispose()


class LatencyProbe(object):
    """Change handler measuring write-to-visible latency of instances."""

    tables = ('instances',)

    def __init__(self):
        self.lock = threading.Lock()
        self.samples = []
        # Rows of the initial snapshot are not writes seen live: sampling
        # starts once the consumer is synced.
        self.active = threading.Event()

    def _sample(self, row):
        if not self.active.is_set():
            return
        stamp = row.get('updated_at') if row else None
        if isinstance(stamp, datetime.datetime):
            delay = (demo_workload.utcnow() - stamp).total_seconds()
            with self.lock:
                self.samples.append(delay)

    def on_add(self, table, key, row):
        self._sample(row)

    def on_update(self, table, key, before, after):
        self._sample(after)

    def on_delete(self, table, key, row):
        pass


class Consumer(object):
    """The demo consumer service: the driver mirroring the stream."""

    def __init__(self, conf, notify, rpc, stream):
        from consumer import service
        from consumer import state as state_mod
        self.stream = stream
        # The host's tables were recreated: a position kept from an earlier
        # run would describe rows that no longer exist.
        store = state_mod.StateStore(conf)
        try:
            store.upgrade()
            for table in models.TABLES:
                store.drop_table(stream, 'oslo_publish', 'snapshot', table)
        finally:
            store.close()
        self.probe = LatencyProbe()
        self.service = service.Consumer(
            conf, transport=notify, driver_kwargs={'rpc_transport': rpc})
        self.service.add_handler('latency', self.probe)
        self.service.start()

    def applied(self):
        return self.service.metrics.value('consumer_deltas_applied_total',
                                          stream=self.stream)

    def stop(self):
        self.service.stop()


# ------------------------------------------------------------ verification

def host_rows(engine, table_names, published):
    """Host tables as {table: {key: encoded row}} (published columns)."""
    out = {}
    with engine.connect() as conn:
        for name in table_names:
            info = published[name]
            table = info.table
            cols = [table.c[c] for c in info.columns]
            rows = {}
            for row in conn.execute(sa.select(*cols)):
                data = dict(row._mapping)
                key = tuple(data[c] for c in info.pk)
                rows[key] = wire.encode_row(data)
            out[name] = rows
    return out


def mirror_rows(view, table_names):
    out = {}
    for name in table_names:
        out[name] = {key: wire.encode_row(dict(row))
                     for key, row in view.rows(name).items()}
    return out


def differences(host, mirror):
    diff = {}
    for name, rows in host.items():
        other = mirror.get(name, {})
        keys = set(rows) | set(other)
        diff[name] = sum(1 for k in keys if rows.get(k) != other.get(k))
    return diff


def _percentile(samples, pct):
    if not samples:
        return float('nan')
    ordered = sorted(samples)
    index = int(round(pct / 100.0 * (len(ordered) - 1)))
    return ordered[index]


def print_table(out, host, mirror, diff, counters, deltas, latencies):
    out.write('\nVerification\n')
    out.write('%-10s %10s %10s %12s\n' % ('table', 'host rows',
                                          'mirror rows', 'differences'))
    for name in sorted(host):
        out.write('%-10s %10d %10d %12d\n' % (
            name, len(host[name]), len(mirror.get(name, {})), diff[name]))
    out.write('\ntransactions committed  %d (rolled back %d, retried %d)\n'
              % (counters.committed, counters.rolled_back, counters.errors))
    out.write('deltas published        %d\n' % deltas[0])
    out.write('deltas applied          %d (the rest came in the initial '
              'snapshot)\n' % deltas[1])
    if latencies:
        out.write('write -> visible        p50 %.1f ms   p99 %.1f ms   '
                  '(%d samples)\n' % (
                      1000 * statistics.median(latencies),
                      1000 * _percentile(latencies, 99), len(latencies)))
    total = sum(diff.values())
    out.write('\nresult: %s\n' % ('CONVERGED (0 differences)' if total == 0
                                  else 'DIVERGED (%d differences)' % total))


# ------------------------------------------------------------------- main

def _progress(out, start, host, consumer):
    parts = ['%5.1fs' % (time.monotonic() - start)]
    if host is not None:
        c = host.workload.counters
        parts.append('tx %d' % c.committed)
        parts.append('published %d' % host.published())
        parts.append('backlog %d' % host.backlog())
    if consumer is not None:
        parts.append('applied %d' % consumer.applied())
        lag = consumer.service.metrics.value('consumer_lag_seconds',
                                             stream=consumer.stream)
        parts.append('lag %.0f ms' % (lag * 1000))
    out.write('  '.join(parts) + '\n')
    out.flush()


def run(args, out=sys.stdout):
    """Run the demo; sets ``args.clean_exit`` False when a stop hung."""
    args.clean_exit = True
    data_dir = checks.data_dir(args.data_dir)
    if args.connection:
        url = checks.database_url(args.connection, '--connection')
    else:
        url = 'sqlite:///%s' % os.path.join(data_dir, 'host.sqlite')
    state_url = None
    if args.state_connection:
        state_url = checks.database_url(args.state_connection,
                                        '--state-connection')
        checks.engine(state_url, 'consumer state').dispose()
    if args.role == 'consumer':
        checks.engine(url, 'host').dispose()
    stream = stream_for(url)
    checks.transport_url(args.transport_url)
    checks.broker(args.transport_url)
    conf = build_conf(args, data_dir, stream, state_url)
    notify, rpc = transports(conf, args)
    host = consumer = None
    try:
        out.write('oslo.publish demo: stream %r, %s, bus %s\n' % (
            stream, _safe_url(url), args.transport_url.split('@')[-1]))
        if args.role in ('both', 'host'):
            host = Host(conf, args, url, notify, rpc, stream)
            host.workload.seed_data()
        if args.role in ('both', 'consumer'):
            consumer = Consumer(conf, notify, rpc, stream)
            if not consumer.service.wait_synced(args.converge_timeout):
                raise DemoError('the consumer did not sync within %ss: '
                                'check that the host is running'
                                % args.converge_timeout)
            consumer.probe.active.set()
        if host is not None:
            host.workload.start()
        start = time.monotonic()
        end = start + args.duration
        while time.monotonic() < end:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            _progress(out, start, host, consumer)
        if host is not None:
            host.workload.stop()
        if args.role == 'host':
            out.write('workload done; relaying for %ss more\n' % args.linger)
            time.sleep(args.linger)
            return 0
        verify_engine = host.engine if host else _engine(url, 'host')
        from oslo_publish import schema
        published = schema.resolve_tables(conf, models.Base.metadata,
                                          verify_engine)
        deadline = time.monotonic() + args.converge_timeout
        while True:
            h = host_rows(verify_engine, models.TABLES, published)
            m = mirror_rows(consumer.service.view(), models.TABLES)
            diff = differences(h, m)
            if not sum(diff.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        counters = (host.workload.counters if host else
                    demo_workload.Counters())
        deltas = (host.published() if host else 0, consumer.applied())
        print_table(out, h, m, diff, counters, deltas,
                    list(consumer.probe.samples))
        return 0 if not sum(diff.values()) else 1
    finally:
        parts = [p for p in (consumer, host) if p is not None]
        if not stop_bounded(parts):
            args.clean_exit = False
        if consumer is not None:
            delete_pool(conf, args)
        if host is not None:
            delete_host_queues(args, stream)
        if args.clean_exit:
            notify.cleanup()
