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

"""Write-path cost: time per transaction of 5 row changes.

::

    python -m benchmarks.write_path [--backends postgresql,mysql]
        [--transactions 60] [--repetitions 25]

Modes, each in a worker process of its own (so no mode's event
listeners touch another's sessions), on a table of its own in one fresh
database per backend:

``baseline``   plain SQLAlchemy ORM, no middleware
``outbox``     ``oslo_publish.install()``, delivery ``outbox``, relay in
               process, publishing to the real RabbitMQ
``outbox_standalone``  the same with ``relay_in_process = false``; the
               relay runs in the parent process (a standalone relay)
``direct``     ``oslo_publish.install()``, delivery ``direct``
``continuum``  SQLAlchemy-Continuum versioning the same model (a peer
               that also writes extra rows per transaction)

One transaction = one ORM session: load 3 rows by id, update 2, delete 1,
insert 2, commit (5 row changes). The parent runs the modes interleaved
in short blocks (round-robin, rotating the order every repetition). The
ratio of a mode is the median over the repetitions of its time per
transaction divided by the baseline's in the same round (paired, so that
load drifting during the run cancels out); the medians of the times are
reported too. Results go to ``benchmarks/results/write_path.json``.
Service URLs come from the same variables as the tests
(``OSLO_PUBLISH_TEST_PG_URL``, ``OSLO_PUBLISH_TEST_MYSQL_URL``,
``OSLO_PUBLISH_TEST_TRANSPORT_URL``).
"""

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

MODES = ('baseline', 'outbox', 'outbox_standalone', 'direct', 'continuum')
#: Modes run only when asked (``measure(modes=...)``): ``logical`` is
#: ``capture = logical`` with the relay in process, on a database whose
#: log is on (figure 8, :mod:`benchmarks.capture_backends`).
#: ``logical_standalone`` the same with the relay (and the log reader)
#: in the parent process, as ``outbox_standalone``.
#: The write-path steps (:mod:`benchmarks.write_steps`), each the
#: capture wired by hand, with no relay and no thread of the library:
#: ``capture_only`` the session listeners with a sink that writes nothing,
#: ``outbox_no_relay`` the same with the outbox ``INSERT`` (entries pile
#: up unpublished).
EXTRA_MODES = ('logical', 'logical_standalone', 'capture_only',
               'outbox_no_relay')
STEPS = ('capture_only', 'outbox_no_relay')
STANDALONE = ('outbox_standalone', 'logical_standalone')
#: The modes that install the middleware (any other mode writes plainly:
#: ``baseline``, ``continuum``, and the logical-decoding floor's ``slot``
#: of :mod:`benchmarks.logical`).
INSTALLED = ('outbox', 'outbox_standalone', 'direct', 'logical',
             'logical_standalone')
BACKENDS = ('postgresql', 'mysql')
PG_URL = os.environ.get(
    'OSLO_PUBLISH_TEST_PG_URL',
    'postgresql+psycopg2://postgres@127.0.0.1:5432/test')
MYSQL_URL = os.environ.get(
    'OSLO_PUBLISH_TEST_MYSQL_URL', 'mysql+pymysql://root@127.0.0.1:3306/test')
TRANSPORT_URL = os.environ.get(
    'OSLO_PUBLISH_TEST_TRANSPORT_URL', 'rabbit://guest:guest@127.0.0.1:5672/')
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       'results', 'write_path.json')
SEED_ROWS = 5000


# ---------------------------------------------------------------- worker

def _model(mode):
    import sqlalchemy as sa
    from sqlalchemy import orm

    if mode == 'continuum':
        import sqlalchemy_continuum
        sqlalchemy_continuum.make_versioned(user_cls=None)
    base = orm.declarative_base()

    class Item(base):
        __tablename__ = 'bench_%s' % mode
        if mode == 'continuum':
            __versioned__ = {}
        id = sa.Column(sa.Integer, primary_key=True, autoincrement=False)
        name = sa.Column(sa.String(64), nullable=False)
        value = sa.Column(sa.Integer, nullable=False)
        note = sa.Column(sa.String(255))

    orm.configure_mappers()
    return base, Item


def _conf(mode, transport_url, exchange):
    from oslo_config import cfg
    from oslo_messaging import transport as om_transport

    from oslo_publish import options

    conf = cfg.ConfigOpts()
    options.register_opts(conf)
    conf.register_opts(om_transport._transport_opts)
    conf([], project='oslo_publish_bench', default_config_files=[])
    conf.set_override('transport_url', transport_url)
    conf.set_override('control_exchange', exchange)
    for name, value in (('tables', ['bench_%s' % mode]),
                        ('stream', 'bench_%s' % mode),
                        ('topics', [exchange]),
                        ('delivery', 'direct' if mode == 'direct'
                         else 'outbox'),
                        ('relay_in_process', mode not in STANDALONE),
                        ('snapshot_server', False),
                        ('capture', 'logical' if mode.startswith('logical')
                         else 'session')):
        conf.set_override(name, value, 'oslo_publish')
    return conf


def _install(mode, maker, metadata, transport_url, exchange):
    import oslo_publish
    conf = _conf(mode, transport_url, exchange)
    if mode.startswith('logical'):
        # What oslo-publish-manage capture-setup does (slot, publication;
        # the binlog's start position).
        from oslo_publish import logcapture
        engine = maker.kw['bind']
        cls = logcapture.reader_class(engine.dialect.name)
        cls.setup(conf, engine, oslo_publish.resolve_tables(
            conf, metadata, engine), conf.oslo_publish.stream)
    return oslo_publish.install(conf, maker, metadata=metadata)


def _standalone_relay(url, exchange, mode='outbox_standalone'):
    """The relay of a ``*_standalone`` mode, run by the parent process.

    ``logical_standalone``: with the stager reading the log, as
    ``oslo-publish-relay`` with ``capture = logical``.
    """
    import oslo_messaging
    import sqlalchemy as sa

    from oslo_publish import publisher
    from oslo_publish import relay
    from oslo_publish import schema

    conf = _conf(mode, TRANSPORT_URL, exchange)
    engine = sa.create_engine(url)
    transport = oslo_messaging.get_notification_transport(conf)
    stream = 'bench_%s' % mode
    tables = {}
    if mode == 'logical_standalone':
        tables = schema.resolve_tables(conf, engine=engine)
    r = relay.Relay(conf, engine, stream, tables,
                    publisher.Publisher(conf, transport, stream), None)
    r.start()
    stager = None
    if mode == 'logical_standalone':
        from oslo_publish import logcapture
        stager = logcapture.attach(conf, engine, tables, stream, r)

    def stop():
        if stager is not None:
            stager.stop()
        r.stop()
        transport.cleanup()
        engine.dispose()
    return stop


class _NullSink(object):
    """The ``capture_only`` step's sink: keeps nothing."""

    def stage(self, session, txid, committed_at, changes, tables):
        pass

    def committed(self, session):
        pass

    def discarded(self, session):
        pass


def _attach_step(mode, maker, metadata, exchange):
    """Wire the capture of a :data:`STEPS` mode by hand; its detach."""
    from oslo_publish import capture
    from oslo_publish import outbox
    from oslo_publish import schema

    conf = _conf(mode, TRANSPORT_URL, exchange)
    engine = maker.kw['bind']
    tables = schema.resolve_tables(conf, metadata, engine)
    stream = 'bench_%s' % mode
    sink = (_NullSink() if mode == 'capture_only'
            else outbox.OutboxSink(stream))
    cap = capture.Capture(tables, sink, stream)
    cap.attach(maker)
    return cap.detach


def worker(mode, url, transport_url, exchange):
    """Serve ``run N`` requests on stdin; answer seconds on stdout.

    The answer is the wall-clock seconds of the N transactions and the
    CPU seconds the writing thread spent on them (``time.thread_time``).
    """
    import sqlalchemy as sa
    from sqlalchemy import orm

    base, item = _model(mode)
    engine = sa.create_engine(url)
    base.metadata.create_all(engine)
    maker = orm.sessionmaker(bind=engine)
    with maker() as session:
        session.add_all([item(id=n, name='seed', value=0)
                         for n in range(1, SEED_ROWS + 1)])
        session.commit()
    handle = None
    if mode in INSTALLED:
        handle = _install(mode, maker, base.metadata, transport_url,
                          exchange)
    elif mode in STEPS:
        detach = _attach_step(mode, maker, base.metadata, exchange)
    next_id = [SEED_ROWS + 1]
    live = list(range(1, SEED_ROWS + 1))

    def transaction():
        ids = live[-3:]
        del live[-1]
        with maker() as session:
            rows = session.scalars(sa.select(item).where(
                item.id.in_(ids)).order_by(item.id)).all()
            rows[0].value += 1
            rows[1].name = 'upd%d' % rows[1].value
            session.delete(rows[2])
            new = next_id[0]
            next_id[0] += 2
            session.add_all([item(id=new, name='new', value=1),
                             item(id=new + 1, name='new', value=2)])
            session.commit()
        live[0:0] = [new, new + 1]

    print('ready', flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == 'quit':
            break
        count = int(words[1])
        cpu = time.thread_time()
        began = time.perf_counter()
        for _ in range(count):
            transaction()
        print('%.9f %.9f' % (time.perf_counter() - began,
                             time.thread_time() - cpu), flush=True)
    if handle is not None:
        handle.stop()
    if mode in STEPS:
        detach()
    engine.dispose()


# ---------------------------------------------------------------- parent

class _Worker(object):
    """A worker process of ``mode``.

    :param root: the source tree to run it from (default: this one), so
        that two versions of the library can be compared
        (:mod:`benchmarks.write_steps`).
    """

    #: Writer-thread CPU seconds of the last :meth:`run` (None: the
    #: worker does not tell).
    cpu = None

    def __init__(self, mode, url, exchange, root=None):
        self.mode = mode
        self._err = tempfile.TemporaryFile(mode='w+')
        self.proc = subprocess.Popen(
            [sys.executable, '-m', 'benchmarks.write_path', '--worker', mode,
             '--url', url, '--exchange', exchange],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._err, text=True,
            cwd=root or os.path.dirname(os.path.dirname(
                os.path.abspath(__file__))))
        line = self.proc.stdout.readline().strip()
        if line != 'ready':
            self.proc.wait(30)
            self._err.seek(0)
            raise RuntimeError('worker %s did not start (%r): %s' % (
                mode, line, self._err.read()[-1500:]))

    def run(self, count):
        self.proc.stdin.write('run %d\n' % count)
        self.proc.stdin.flush()
        words = self.proc.stdout.readline().split()
        self.cpu = float(words[1]) if len(words) > 1 else None
        return float(words[0])

    def close(self):
        try:
            self.proc.stdin.write('quit\n')
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait(60)
        if getattr(self, '_err', None) is not None:
            self._err.close()


def _database(backend):
    import sqlalchemy as sa
    from sqlalchemy.engine import url as sa_url
    admin = sa_url.make_url(PG_URL if backend == 'postgresql'
                            else MYSQL_URL)
    name = 'bench_%s' % uuid.uuid4().hex[:10]
    engine = sa.create_engine(admin, isolation_level='AUTOCOMMIT')
    with engine.connect() as conn:
        conn.exec_driver_sql('CREATE DATABASE %s' % name)
    url = admin.set(database=name).render_as_string(hide_password=False)

    def drop():
        with engine.connect() as conn:
            extra = ' WITH (FORCE)' if backend == 'postgresql' else ''
            conn.exec_driver_sql('DROP DATABASE IF EXISTS %s%s'
                                 % (name, extra))
        engine.dispose()
    return url, drop


def _create_outbox(url):
    import sqlalchemy as sa

    from oslo_publish import outbox
    engine = sa.create_engine(url)
    outbox.metadata.create_all(engine)
    engine.dispose()


def _cleanup_broker(exchange):
    try:
        import kombu
        with kombu.Connection(TRANSPORT_URL.replace('rabbit://', 'amqp://',
                                                    1)) as conn:
            channel = conn.channel()
            channel.queue_delete('%s.info' % exchange)
            channel.exchange_delete(exchange)
    except Exception as exc:  # noqa: best effort
        print('broker cleanup failed: %s' % exc, file=sys.stderr)


def available_modes():
    """The modes this environment can run.

    ``continuum`` needs SQLAlchemy-Continuum (the ``bench`` extra); it is
    a peer without a target, so it is left out, and said so, when the
    package is missing.
    """
    return tuple(m for m in MODES if m != 'continuum' or
                 importlib.util.find_spec('sqlalchemy_continuum'))


def measure(backend, transactions, repetitions, modes=None, url=None):
    """Interleaved medians (seconds per transaction) of every mode.

    :param modes: the modes (default: :func:`available_modes`); the
        first must be ``baseline``.
    :param url: a database to use (default: a fresh one on the
        machine's server of ``backend``, dropped afterwards).
    """
    modes = tuple(modes or available_modes())
    if url is None:
        url, drop = _database(backend)
    else:
        def drop():
            pass
    exchange = 'bench_%s' % uuid.uuid4().hex[:10]
    workers = []
    stops = []
    try:
        _create_outbox(url)
        workers = [_Worker(mode, url, exchange) for mode in modes]
        for mode in modes:
            if mode in STANDALONE:
                stops.append(_standalone_relay(url, exchange, mode))
        for w in workers:
            w.run(max(20, transactions // 5))
        samples = {mode: [] for mode in modes}
        for rep in range(repetitions):
            order = workers[rep % len(workers):] + \
                workers[:rep % len(workers)]
            for w in order:
                samples[w.mode].append(w.run(transactions) / transactions)
    finally:
        for stop in stops:
            stop()
        for w in workers:
            w.close()
        drop()
        _cleanup_broker(exchange)
    medians = {mode: statistics.median(s) for mode, s in samples.items()}
    # Paired ratios: each repetition's mode against the baseline of the
    # same round, so that load drifting during the run cancels out.
    paired = {mode: statistics.median(
        [x / b for x, b in zip(s, samples['baseline'])])
        for mode, s in samples.items()}
    return {
        'median_ms_per_transaction': {
            m: round(v * 1000.0, 4) for m, v in medians.items()},
        'ratio_to_baseline': {m: round(v, 4) for m, v in paired.items()},
        'ratio_of_medians': {
            m: round(v / medians['baseline'], 4) for m, v in medians.items()},
        'samples_ms': {m: [round(x * 1000.0, 4) for x in s]
                       for m, s in samples.items()},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--backends', default=','.join(BACKENDS))
    parser.add_argument('--transactions', type=int, default=60)
    parser.add_argument('--repetitions', type=int, default=25)
    parser.add_argument('--output', default=RESULTS)
    parser.add_argument('--worker', choices=MODES + EXTRA_MODES,
                        help=argparse.SUPPRESS)
    parser.add_argument('--url', help=argparse.SUPPRESS)
    parser.add_argument('--exchange', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.url, TRANSPORT_URL, args.exchange)
        return 0
    began = time.monotonic()
    results = {
        'benchmark': 'write_path',
        'workload': 'ORM session: load 3 rows, update 2, delete 1, '
                    'insert 2, commit (5 row changes)',
        'transactions_per_sample': args.transactions,
        'repetitions': args.repetitions,
        'python': platform.python_version(),
        'cpus': os.cpu_count(),
        'backends': {},
    }
    for backend in args.backends.split(','):
        got = measure(backend, args.transactions, args.repetitions)
        results['backends'][backend] = got
        print('%s (median ms/transaction, ratio to baseline):' % backend)
        for mode in available_modes():
            print('  %-18s %8.3f ms  %.3fx' % (
                mode, got['median_ms_per_transaction'][mode],
                got['ratio_to_baseline'][mode]))
    results['elapsed_s'] = round(time.monotonic() - began, 1)
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, 'w') as f:
        json.dump(results, f, indent=2, sort_keys=True)
        f.write('\n')
    print('written %s in %.0fs' % (args.output, results['elapsed_s']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
