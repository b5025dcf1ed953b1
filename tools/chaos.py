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


"""Chaos convergence runner: the invariants of DESIGN.md under faults.

::

    python -m tools.chaos --seed 1 --db postgresql [--runs K]
        [--duration S] [--long] [--keep] [--capture logical]

Each run (one seed on one database) starts, each in its own process:

* host writers (:mod:`tools.chaos_writer`, ``oslo_publish.install`` with
  the outbox, no relay of their own) doing random inserts, updates,
  deletes, ORM bulk updates and deletes, primary-key changes and
  rolled-back savepoints and transactions (marked with
  :data:`tools.chaos_writer.MARKER`);
* the standalone relay and snapshot server (``oslo-publish-relay``);
* a consumer service (``consumer-sync``) whose state store is a database
  of its own on the same server;

over a private RabbitMQ node of its own (never the shared broker).
With ``--capture logical`` the writers' sessions capture nothing: the
relay reads the host database's log (``capture = logical``), and the
host database is on a private server with its log on (PostgreSQL
``wal_level = logical``: :mod:`tests.private_pg`; MariaDB row binlog:
:mod:`tests.private_mariadb`, one per runner process), set up as
``oslo-publish-manage capture-setup`` does; the state store stays on the
machine's server.
Everything the relay publishes is copied by a tap (a listener pool of
its own) and forwarded to the consumer's topic by a shuffler that, while
faults run, duplicates, reorders and replays messages. Faults are
injected at seeded random moments: RabbitMQ ``stop_app``/``start_app``,
relay and consumer SIGKILL and restart, the consumer's queue purged
while it is down, and the relay's or the consumer's database
connections terminated by the server.

When the workload and the faults are over, the run waits for the mirror
to equal the host and then checks, every row and every column (direct
SELECT against the state store and against ``consumer-dump``, compared
in the wire encoding): nothing lost, no phantom (no marked value on the
bus or in the mirror), no duplicate applied, each stream's sequence
gapless (the relay keeps its outbox entries, ``outbox_retention``). The
summary reports the faults by kind and the time to converge after the
last fault; the exit status is non-zero when any run failed or took
longer than ``--target`` seconds to converge.
"""

import argparse
import collections
import json
import os
import queue
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

from oslo_config import cfg
import oslo_messaging
import sqlalchemy as sa

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from consumer import state as state_mod  # noqa: E402
from oslo_publish import migration  # noqa: E402
from oslo_publish import outbox  # noqa: E402
from oslo_publish import wire  # noqa: E402
from tests import base  # noqa: E402
from tools import chaos_writer  # noqa: E402

KEY = 'chaos-signing-key-9f3c'
FAULTS = ('rabbit_restart', 'relay_kill', 'consumer_kill', 'queue_purge',
          'relay_db_kill', 'consumer_db_kill')
SHUFFLES = ('duplicate', 'reorder', 'replay')
DB_PORTS = {'postgresql': 5432, 'mysql': 3306}


def marked(value):
    """True when a (wire-encoded) value holds a rolled-back marker.

    Structured, not a text search: a committed ``upd-424242`` is no
    marker, an integer column equal to MARKER_INT is.
    """
    if isinstance(value, str):
        return chaos_writer.MARKER in value
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value == chaos_writer.MARKER_INT
    if isinstance(value, dict):
        return any(marked(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(marked(v) for v in value)
    return False


def _say(text, *args):
    sys.stdout.write((text % args if args else text) + '\n')
    sys.stdout.flush()


# ------------------------------------------------------------- processes

class Proc(object):
    """A child process (restartable) logging to a file of its own."""

    def __init__(self, name, args, log_path):
        self.name = name
        self.args = args
        self.log_path = log_path
        self.proc = None

    def start(self, stdout=None):
        log = open(self.log_path, 'a')
        self.proc = subprocess.Popen(
            self.args, cwd=ROOT, stdout=stdout or log, stderr=log,
            text=True)
        log.close()
        return self.proc

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL and reap."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def stop(self, timeout=20):
        """SIGTERM, then SIGKILL after ``timeout``."""
        if not self.alive():
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def _db_connections(pid, port):
    """Local ports of ``pid``'s TCP connections to the database."""
    import psutil
    try:
        conns = psutil.Process(pid).net_connections(kind='tcp')
    except psutil.Error:
        return []
    return [c.laddr.port for c in conns
            if c.raddr and c.raddr.port == port]


def kill_db_connections(backend, pid, admin_url=None):
    """Terminate ``pid``'s database sessions from the server side.

    ``admin_url``: the server's (default: the machine's server of
    ``backend``); a PostgreSQL walsender and a MariaDB binlog dump
    thread of ``pid`` are terminated too.
    """
    admin_url = sa.engine.make_url(admin_url or (
        base.PG_URL if backend == 'postgresql' else base.MYSQL_URL))
    ports = _db_connections(pid, admin_url.port or DB_PORTS[backend])
    if not ports:
        return 0
    admin = sa.create_engine(admin_url, isolation_level='AUTOCOMMIT')
    killed = 0
    try:
        with admin.connect() as conn:
            if backend == 'postgresql':
                killed = len(conn.execute(sa.text(
                    'SELECT pg_terminate_backend(pid) FROM pg_stat_activity'
                    ' WHERE client_port = ANY(:ports)'),
                    {'ports': ports}).all())
            else:
                hosts = ['%s:%d' % (h, p) for p in ports
                         for h in ('127.0.0.1', 'localhost')]
                ids = conn.execute(sa.text(
                    'SELECT id FROM information_schema.processlist '
                    'WHERE host IN :hosts').bindparams(
                        sa.bindparam('hosts', expanding=True)),
                    {'hosts': hosts}).scalars().all()
                for ident in ids:
                    try:
                        conn.exec_driver_sql('KILL %d' % ident)
                        killed += 1
                    except sa.exc.DBAPIError:
                        pass  # already gone
    finally:
        admin.dispose()
    return killed


# -------------------------------------------------------- tap / shuffler

class _TapEndpoint(object):

    def __init__(self, inbox):
        self.inbox = inbox

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        self.inbox.put((publisher_id, event_type, payload))
        return oslo_messaging.NotificationResult.HANDLED


class Tap(object):
    """Copies every message the relay publishes and forwards it.

    A listener pool of its own on the relay's topic: it records each
    message (marker scan, seq -> txid) and forwards it to the consumer's
    topic. While ``faults`` is set it duplicates, holds back (reorders)
    and replays earlier messages (all validly signed: they are the
    relay's own).
    """

    def __init__(self, conf, source_topic, target_topic, pool, rng):
        self.conf = conf
        self.pool = pool
        self.faults = False
        self.counts = collections.Counter()
        self.phantom_samples = []
        self.seq_txid = {}
        self.seq_conflicts = []
        self.images = collections.defaultdict(list)
        self.messages = 0
        self.deltas_seen = 0
        self._rng = rng
        self._history = []
        self._inbox = queue.Queue()
        self._stopping = threading.Event()
        self.transport = oslo_messaging.get_notification_transport(conf)
        self._notifiers = {}
        self._target_topic = target_topic
        self.listener = oslo_messaging.get_notification_listener(
            self.transport, [oslo_messaging.Target(topic=source_topic)],
            [_TapEndpoint(self._inbox)], executor='threading', pool=pool)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.listener.start()
        self._thread.start()

    def stop(self):
        self._stopping.set()
        self._inbox.put(None)
        self._thread.join(10)
        self.listener.stop()
        self.listener.wait()
        self.transport.cleanup()

    def _record(self, event_type, payload):
        self.messages += 1
        if marked(payload):
            self.counts['phantom_on_bus'] += 1
            if len(self.phantom_samples) < 5:
                self.phantom_samples.append(
                    json.dumps(payload, ensure_ascii=False)[:4000])
        if event_type != wire.EVENT_DELTA or not isinstance(payload, dict):
            return
        for tx in payload.get('transactions') or []:
            seq, txid = tx.get('seq'), tx.get('txid')
            if seq not in self.seq_txid:
                self.deltas_seen += len(tx.get('changes') or [])
            known = self.seq_txid.setdefault(seq, txid)
            if known != txid and len(self.seq_conflicts) < 20:
                self.seq_conflicts.append((seq, known, txid))
            for change in tx.get('changes') or []:
                if change.get('after') is not None:
                    self.images[(change['table'],
                                 json.dumps(change['key']))].append(
                        change['after'])

    def _send(self, item):
        publisher_id, event_type, payload = item
        notifier = self._notifiers.get(publisher_id)
        if notifier is None:
            notifier = oslo_messaging.Notifier(
                self.transport, publisher_id=publisher_id,
                driver='messagingv2', topics=[self._target_topic])
            self._notifiers[publisher_id] = notifier
        notifier.info({}, event_type, payload)

    def _run(self):
        held = None
        while not self._stopping.is_set():
            try:
                item = self._inbox.get(timeout=0.1)
            except queue.Empty:
                if held is not None:
                    self._send(held)
                    held = None
                continue
            if item is None:
                return
            self._record(item[1], item[2])
            if not self.faults:
                self._send(item)
                if held is not None:
                    self._send(held)
                    held = None
                continue
            self._history.append(item)
            del self._history[:-200]
            roll = self._rng.random()
            if roll < 0.15 and held is None:
                held = item
                self.counts['reorder'] += 1
                continue
            self._send(item)
            if roll < 0.30:
                self._send(item)
                self.counts['duplicate'] += 1
            elif roll < 0.36:
                self._send(self._rng.choice(self._history))
                self.counts['replay'] += 1
            if held is not None:
                self._send(held)
                held = None


def _messaging_conf(url, exchange):
    from oslo_messaging import opts as messaging_opts
    from oslo_messaging import transport
    conf = cfg.ConfigOpts()
    conf.register_opts(transport._transport_opts)
    for group, opts in messaging_opts.list_opts():
        if group == 'oslo_messaging_rabbit':
            conf.register_opts(opts, group=group)
    conf([], project='chaos', default_config_files=[])
    conf.set_override('transport_url', url)
    conf.set_override('control_exchange', exchange)
    conf.set_override('amqp_durable_queues', True, 'oslo_messaging_rabbit')
    conf.set_override('rabbit_interval_max', 1, 'oslo_messaging_rabbit')
    return conf


# ----------------------------------------------------------------- a run

class RunResult(object):
    """What one seed on one database did and proved."""

    def __init__(self, backend, seed, capture='session'):
        self.backend = backend
        self.seed = seed
        self.capture = capture
        self.faults = collections.Counter()
        self.committed = self.rolled_back = self.savepoints = 0
        self.write_errors = 0
        #: Writers' rolled-back failures by kind (deadlock, stale row...).
        self.error_kinds = collections.Counter()
        #: Failures of a kind the writers do not expect (a bug to read
        #: in the writer logs); they used to stop a writer thread.
        self.unexpected = 0
        self.transactions = self.deltas = 0
        self.lost = self.phantoms = self.duplicates_applied = 0
        self.gaps = 0
        self.seq_reused = 0
        self.converge_seconds = None
        self.duplicates_dropped = 0
        self.failures = []
        self.workdir = None

    @property
    def ok(self):
        return not self.failures

    def line(self):
        """One line; ``committed`` and ``write_errors`` are the writers'.

        ``tx`` (published) below ``committed`` minus the rolled-back
        savepoints' count is normal (a transaction whose changes cancel
        out publishes nothing); a low ``committed`` with many
        ``write_errors`` means the writers, not the pipeline, slowed.
        """
        return ('seed=%d db=%s%s %s tx=%d committed=%d write_errors=%d%s '
                'deltas=%d faults=%d '
                'converge=%s lost=%d phantoms=%d dup_applied=%d gaps=%d%s'
                % (self.seed, self.backend,
                   '' if self.capture == 'session'
                   else ' capture=%s' % self.capture,
                   'ok' if self.ok else 'FAILED',
                   self.transactions, self.committed, self.write_errors,
                   (' (%s)' % ', '.join(
                       '%s=%d' % kv for kv in sorted(
                           self.error_kinds.items())))
                   if self.error_kinds else '',
                   self.deltas, sum(self.faults.values()),
                   '-' if self.converge_seconds is None
                   else '%.2fs' % self.converge_seconds,
                   self.lost, self.phantoms, self.duplicates_applied,
                   self.gaps, '' if self.ok else
                   ' (%s; logs in %s)' % ('; '.join(self.failures),
                                          self.workdir)))


def _fault_plan(rng, duration, kinds=None):
    """``[(seconds after the start, kind)]``: seeded kinds and moments.

    Without ``kinds``, about one fault per 4 seconds, every kind before
    any repeats.
    """
    if kinds is None:
        count = max(3, int(duration / 4))
        kinds = []
        while len(kinds) < count:
            batch = list(FAULTS)
            rng.shuffle(batch)
            kinds.extend(batch)
        kinds = kinds[:count]
    span = max(duration - 2.5, 1.0)
    times = sorted(1.5 + rng.random() * span for _ in kinds)
    return list(zip(times, kinds))


class Run(object):
    """One seed on one database; :meth:`execute` returns a RunResult."""

    def __init__(self, node, backend, seed, duration=20.0, writers=2,
                 threads=2, rate=12.0, converge_timeout=120.0,
                 workdir=None, kinds=None, capture='session'):
        self.node = node
        self.kinds = kinds
        self.capture = capture
        self.backend = backend
        self.seed = seed
        self.duration = duration
        self.writers = writers
        self.threads = threads
        self.rate = rate
        self.converge_timeout = converge_timeout
        self.rng = random.Random('%s-%d' % (backend, seed))
        tag = uuid.UUID(int=self.rng.getrandbits(128)).hex[:8]
        self.stream = 'chaos_%d_%s' % (seed, tag)
        self.exchange = 'chaosx_%s' % uuid.uuid4().hex[:8]
        self.topic = 'chaost_%s' % tag
        self.consumer_topic = self.topic + '_c'
        self.pool = 'chaos_pool_%s' % uuid.uuid4().hex[:8]
        self.tap_pool = self.pool + '_tap'
        self.workdir = workdir or tempfile.mkdtemp(
            prefix='oslo-publish-chaos-%s-%d-' % (backend, seed))
        self.result = RunResult(backend, seed, capture)
        self.result.workdir = self.workdir
        self._fixtures = []
        self._procs = []
        self.tap = None

    # ---------------------------------------------------------- set-up

    def _fixture(self, fixture):
        fixture.setUp()
        self._fixtures.append(fixture)
        return fixture

    def _write_conf(self, name, sections):
        path = os.path.join(self.workdir, name)
        with open(path, 'w') as out:
            for section, values in sections:
                out.write('[%s]\n' % section)
                for key, value in values:
                    out.write('%s = %s\n' % (key, value))
        return path

    def _common(self):
        return [('DEFAULT', [('transport_url', self.node.url),
                             ('control_exchange', self.exchange),
                             ('debug', 'false')]),
                ('oslo_messaging_rabbit', [('amqp_durable_queues', 'true'),
                                           ('rabbit_interval_max', '1')])]

    def _host_database(self):
        """The host database: with log capture, on a private server."""
        if self.capture == 'session':
            self.host_admin_url = None
            return self._fixture(base.DatabaseFixture(self.backend))
        if self.backend == 'postgresql':
            from tests import private_pg
            db = self._fixture(private_pg.DatabaseFixture())
            self.host_admin_url = db.cluster.url
        else:
            from tests import private_mariadb
            db = self._fixture(private_mariadb.DatabaseFixture())
            self.host_admin_url = db.server.url
        return db

    def _capture_setup(self):
        """What ``oslo-publish-manage capture-setup`` does."""
        from oslo_publish import logcapture
        from oslo_publish import options
        from oslo_publish import schema
        conf = cfg.ConfigOpts()
        options.register_opts(conf)
        conf([], project='chaos', default_config_files=[])
        conf.set_override('tables', list(chaos_writer.TABLES),
                          'oslo_publish')
        engine = self.host_db.engine
        cls = logcapture.reader_class(engine.dialect.name)
        cls.setup(conf, engine, schema.resolve_tables(conf, engine=engine),
                  self.stream)

    def _setup(self):
        self.host_db = self._host_database()
        self.state_db = self._fixture(base.DatabaseFixture(self.backend))
        chaos_writer.Base.metadata.create_all(self.host_db.engine)
        migration.upgrade(self.host_db.engine)
        if self.capture == 'logical':
            self._capture_setup()
        chaos_writer.preload(self.host_db.engine)
        store = state_mod.StateStore.from_url(self.state_db.url)
        store.upgrade()
        self.store = store
        relay_conf = self._write_conf('relay.conf', self._common() + [
            ('database', [('connection', self.host_db.url)]),
            ('oslo_publish', [
                ('stream', self.stream),
                ('tables', ','.join(chaos_writer.TABLES)),
                ('topics', self.topic), ('heartbeat_interval', '0.2'),
                ('relay_poll_interval', '0.05'), ('signing_key', KEY),
                # Session capture keeps every published entry (the
                # sequence check reads them); log capture on PostgreSQL
                # publishes straight from the log, which retention would
                # turn off: its sequence is checked on the tap.
                ('outbox_retention',
                 '86400' if self.capture == 'session' else '0'),
                ('batch_size', '50'),
                ('snapshot_page_size', '200'),
                ('retry_max_backoff', '1.0'),
                ('capture', self.capture)])])
        consumer_conf = self._write_conf('consumer.conf', self._common() + [
            ('consumer', [
                ('streams', self.stream), ('topics', self.consumer_topic),
                ('pool', self.pool), ('signing_key', KEY),
                ('gap_timeout', '1.0'), ('inactivity_timeout', '5.0'),
                ('resync_backoff_min', '0.1'),
                ('resync_backoff_max', '1.0'),
                ('resyncs_per_minute', '60'),
                ('snapshot_timeout', '10.0'),
                ('resync_interval', '0')]),
            ('consumer_database', [('connection', self.state_db.url),
                                   ('max_retries', '-1'),
                                   ('retry_interval', '1')])])
        self.consumer_conf = consumer_conf
        self.relay = Proc('relay', [sys.executable, '-m',
                                    'oslo_publish.cmd.relay',
                                    '--config-file', relay_conf],
                          os.path.join(self.workdir, 'relay.log'))
        self.consumer = Proc('consumer', [sys.executable, '-m',
                                          'consumer.cmd.sync',
                                          '--config-file', consumer_conf],
                             os.path.join(self.workdir, 'consumer.log'))
        self._procs += [self.relay, self.consumer]
        self.tap = Tap(_messaging_conf(self.node.url, self.exchange),
                       self.topic, self.consumer_topic, self.tap_pool,
                       random.Random(self.rng.random()))
        self.tap.start()

    def _status(self):
        try:
            found = self.store.status().get(self.stream)
        except sa.exc.DBAPIError:
            return {}
        return found.counters if found else {}

    def _wait(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.1)
        self.result.failures.append(what)
        return False

    # ---------------------------------------------------------- faults

    def _fault(self, kind):
        rng = self.rng
        if kind == 'rabbit_restart':
            self.node.stop_app()
            time.sleep(rng.uniform(0.5, 3.0))
            self.node.start_app()
        elif kind in ('relay_kill', 'consumer_kill', 'queue_purge'):
            proc = self.relay if kind == 'relay_kill' else self.consumer
            proc.kill()
            time.sleep(rng.uniform(0.2, 2.0))
            if kind == 'queue_purge':
                self.node.purge_queue(self.pool)
            proc.start()
        else:
            if kind == 'relay_db_kill':
                kill_db_connections(self.backend, self.relay.pid,
                                    self.host_admin_url)
            else:
                kill_db_connections(self.backend, self.consumer.pid)
        self.result.faults[kind] += 1

    def _inject(self, plan, started, done):
        try:
            for at, kind in plan:
                delay = started + at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self._fault(kind)
                done['last'] = time.monotonic()
        except Exception as exc:  # noqa: report, never hang the run
            self.result.failures.append('fault injection failed: %r' % exc)
            done['last'] = time.monotonic()

    # ----------------------------------------------------------- reads

    def host_rows(self):
        return base.table_rows(self.host_db.engine,
                               chaos_writer.Base.metadata.sorted_tables)

    def mirror_rows(self):
        return {t: dict(self.store.load_rows(self.stream, t))
                for t in chaos_writer.TABLES}

    def _pending(self):
        with self.host_db.engine.connect() as conn:
            return conn.execute(outbox.count_unpublished()).scalar()

    def _converged(self):
        try:
            return self._pending() == 0 and \
                self.mirror_rows() == self.host_rows()
        except sa.exc.DBAPIError:
            return False

    # ----------------------------------------------------------- checks

    def _note(self, text):
        """Keep a finding in the run's runner.log."""
        with open(os.path.join(self.workdir, 'runner.log'), 'a') as out:
            out.write(text + '\n')

    def _check_dump(self, host):
        for table in chaos_writer.TABLES:
            dumped = subprocess.run(
                [sys.executable, '-m', 'consumer.cmd.dump', '--config-file',
                 self.consumer_conf, '--table', table], cwd=ROOT,
                capture_output=True, text=True, timeout=120)
            if dumped.returncode:
                self.result.failures.append('consumer-dump failed: %s'
                                            % dumped.stderr[-300:])
                continue
            rows = [json.loads(line) for line in dumped.stdout.splitlines()]
            for row in rows:
                if marked(row):
                    self.result.phantoms += 1
                    self._note('marked row in consumer-dump of %s: %s'
                               % (table, row))
            got = sorted(json.dumps(row, sort_keys=True) for row in rows)
            want = sorted(json.dumps(wire.encode_row(row), sort_keys=True)
                          for row in host[table].values())
            if got != want:
                self.result.failures.append(
                    'consumer-dump of %s differs from the host (%d rows '
                    'vs %d)' % (table, len(got), len(want)))

    def _classify(self, host, mirror):
        """Count lost, phantom and regressed (duplicate) rows."""
        for table in chaos_writer.TABLES:
            want, got = host[table], mirror[table]
            for key in set(want) | set(got):
                if key not in got:
                    self.result.lost += 1
                    self._note('lost: %s %r' % (table, key))
                elif key not in want:
                    self.result.phantoms += 1
                    self._note('phantom row: %s %r' % (table, key))
                elif wire.encode_row(got[key]) != wire.encode_row(want[key]):
                    self._note('differs: %s %r host %s mirror %s' % (
                        table, key, wire.encode_row(want[key]),
                        wire.encode_row(got[key])))
                    older = self.tap.images.get(
                        (table, json.dumps([wire.encode_value(v)
                                            for v in key])), [])
                    if wire.encode_row(got[key]) in older:
                        self.result.duplicates_applied += 1
                    else:
                        self.result.lost += 1

    def _check_sequence(self):
        """Seqs exactly 1..last_seq, once each.

        Session capture: the retained outbox entries. Log capture: the
        seqs the tap saw published (nothing is retained).
        """
        o = outbox.outbox
        with self.host_db.engine.connect() as conn:
            last = conn.execute(sa.select(outbox.streams.c.last_seq).where(
                outbox.streams.c.stream == self.stream)).scalar() or 0
            seqs = []
            deltas = 0
            retained = () if self.capture != 'session' else conn.execute(
                sa.select(o.c.seq, o.c.payload)
                .where(o.c.stream == self.stream).order_by(o.c.seq))
            for seq, payload in retained:
                seqs.append(seq)
                deltas += len(json.loads(payload).get('changes', []))
        if self.capture != 'session':
            seqs = sorted(self.tap.seq_txid)
            deltas = self.tap.deltas_seen
        self.result.transactions = len(seqs)
        self.result.deltas = deltas
        expected = list(range(1, last + 1))
        if seqs != expected:
            self.result.gaps = len(set(expected) ^ set(seqs)) + \
                len(seqs) - len(set(seqs))
            self.result.failures.append('sequence not gapless')
        self.result.seq_reused = len(self.tap.seq_conflicts)
        return last

    def _check(self, host):
        result = self.result
        mirror = self.mirror_rows()
        self._classify(host, mirror)
        self._check_dump(host)
        last = self._check_sequence()
        result.phantoms += self.tap.counts['phantom_on_bus']
        for sample in self.tap.phantom_samples:
            self._note('marked message on the bus: %s' % sample)
        for table, rows in host.items():
            for row in rows.values():
                if marked(wire.encode_row(row)):
                    result.failures.append('marker in host table %s'
                                           % table)
        self._wait(lambda: self._status().get('applied_seq') == last, 30,
                   'consumer never reported applied_seq %d' % last)
        result.duplicates_dropped = self._status().get('duplicates', 0)
        for name in ('lost', 'phantoms', 'duplicates_applied'):
            count = getattr(result, name)
            if count:
                result.failures.append('%s=%d' % (name, count))
        for name in ('relay.log', 'consumer.log'):
            with open(os.path.join(self.workdir, name)) as log:
                if KEY in log.read():
                    result.failures.append('signing key in %s' % name)
        if self.tap.seq_conflicts:
            result.failures.append('seq reused for another transaction: %s'
                                   % (self.tap.seq_conflicts[:3],))

    # ------------------------------------------------------------ main

    def execute(self):
        result = self.result
        try:
            self._execute()
        except Exception as exc:  # noqa: a broken run is a failed run
            import traceback
            result.failures.append('run error: %r' % exc)
            with open(os.path.join(self.workdir, 'runner.log'), 'a') as out:
                traceback.print_exc(file=out)
        finally:
            self._teardown()
        return result

    def _execute(self):
        result = self.result
        self._setup()
        self.relay.start()
        self.consumer.start()
        if not self._wait(lambda: self._status().get('synced'), 90,
                          'consumer never synced'):
            return
        writers = []
        for index in range(self.writers):
            proc = Proc('writer%d' % index, [
                sys.executable, '-m', 'tools.chaos_writer',
                '--db', self.host_db.url, '--stream', self.stream,
                '--seed', str(self.seed), '--index', str(index),
                '--threads', str(self.threads),
                '--duration', str(self.duration),
                '--rate', str(self.rate), '--capture', self.capture],
                os.path.join(self.workdir, 'writer%d.log' % index))
            proc.start(stdout=subprocess.PIPE)
            writers.append(proc)
            self._procs.append(proc)
        started = time.monotonic()
        plan = _fault_plan(self.rng, self.duration, self.kinds)
        done = {'last': started}
        self.tap.faults = True
        injector = threading.Thread(target=self._inject,
                                    args=(plan, started, done), daemon=True)
        injector.start()
        for proc in writers:
            out, _ = proc.proc.communicate(timeout=self.duration + 120)
            counts = json.loads(out.strip().splitlines()[-1]) \
                if out.strip() else {}
            if proc.proc.returncode:
                result.failures.append('writer exited with %d'
                                       % proc.proc.returncode)
            result.committed += counts.get('committed', 0)
            result.rolled_back += counts.get('rolled_back', 0)
            result.savepoints += counts.get('savepoints_rolled_back', 0)
            result.write_errors += counts.get('errors', 0)
            result.error_kinds.update(counts.get('error_kinds') or {})
            result.unexpected += counts.get('unexpected', 0)
        writers_done = time.monotonic()
        injector.join()
        self.tap.faults = False
        result.faults.update({k: self.tap.counts[k] for k in SHUFFLES})
        quiet = max(writers_done, done['last'])
        deadline = quiet + self.converge_timeout
        while time.monotonic() < deadline:
            if self._converged():
                result.converge_seconds = time.monotonic() - quiet
                break
            time.sleep(0.2)
        host = self.host_rows()
        if result.converge_seconds is None:
            result.failures.append('no convergence within %.0fs'
                                   % self.converge_timeout)
        self._check(host)

    def _teardown(self):
        for proc in reversed(self._procs):
            try:
                proc.stop()
            except Exception:  # noqa: best effort
                proc.kill()
        if self.tap is not None:
            try:
                self.tap.stop()
            except Exception:  # noqa: best effort
                pass
        if getattr(self, 'store', None) is not None:
            self.store.close()
        self.node.delete_queues([self.pool, self.tap_pool,
                                 self.topic + '.info',
                                 self.consumer_topic + '.info'])
        for fixture in reversed(self._fixtures):
            try:
                fixture.cleanUp()
            except Exception:  # noqa: best effort
                pass


# ------------------------------------------------------------- summary

def summary(results):
    """The summary text of a list of RunResults."""
    faults = collections.Counter()
    for r in results:
        faults.update(r.faults)
    times = sorted(r.converge_seconds for r in results
                   if r.converge_seconds is not None)
    failed = [r for r in results if not r.ok]
    kinds = collections.Counter()
    for r in results:
        kinds.update(r.error_kinds)
    lines = [
        'chaos summary',
        '  runs: %d (%s), passed %d, failed %d' % (
            len(results), ', '.join(
                '%s=%d' % (db, sum(1 for r in results if r.backend == db))
                for db in sorted({r.backend for r in results})),
            len(results) - len(failed), len(failed)),
        '  faults injected: %s' % ', '.join(
            '%s=%d' % (k, faults[k]) for k in FAULTS + SHUFFLES),
        '  transactions: %d committed and published (%d of them with a '
        'rolled-back savepoint), %d rolled back, %d failed and rolled '
        'back%s; deltas: %d' % (
            sum(r.transactions for r in results),
            sum(r.savepoints for r in results),
            sum(r.rolled_back for r in results),
            sum(r.write_errors for r in results),
            (' (%s)' % ', '.join('%s=%d' % kv for kv in sorted(
                kinds.items()))) if kinds else '',
            sum(r.deltas for r in results)),
        '  writer transactions committed: %d; failed unexpectedly: %d%s' % (
            sum(r.committed for r in results),
            sum(r.unexpected for r in results),
            ' (tracebacks in the writer logs)'
            if any(r.unexpected for r in results) else ''),
        '  lost = %d, phantoms = %d, duplicates applied = %d, sequence '
        'gaps = %d (duplicates dropped by the consumer: %d)' % (
            sum(r.lost for r in results), sum(r.phantoms for r in results),
            sum(r.duplicates_applied for r in results),
            sum(r.gaps for r in results),
            sum(r.duplicates_dropped for r in results)),
        '  time to converge after the last fault: p50 %s, max %s' % (
            '%.2fs' % statistics.median(times) if times else '-',
            '%.2fs' % times[-1] if times else '-'),
    ]
    return '\n'.join(lines)


class Node(object):
    """The private RabbitMQ node of a chaos invocation."""

    def __init__(self, fixture=None):
        self._own = fixture is None
        self.fixture = fixture or base.RabbitNodeFixture()

    def __enter__(self):
        if self._own:
            self.fixture.setUp()
        return self

    def __exit__(self, *exc):
        if self._own:
            self.fixture.cleanUp()

    @property
    def url(self):
        return self.fixture.url

    def stop_app(self):
        self.fixture.stop_app()

    def start_app(self):
        self.fixture.start_app()

    def purge_queue(self, name):
        self.fixture.purge_queue(name)

    def delete_queues(self, names):
        self.fixture.delete_queues(names)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog='python -m tools.chaos',
        description='Chaos convergence runs on a private RabbitMQ node.')
    parser.add_argument('--seed', type=int, default=1,
                        help='first seed (default 1)')
    parser.add_argument('--runs', type=int, default=1,
                        help='seeds per database: seed .. seed+runs-1')
    parser.add_argument('--db', choices=('postgresql', 'mysql', 'both'),
                        default='both', help='host and state database')
    parser.add_argument('--duration', type=float, default=20.0,
                        help='seconds of workload and faults per run')
    parser.add_argument('--long', action='store_true',
                        help='the long run: 50 seeds on each database')
    parser.add_argument('--target', type=float, default=30.0,
                        help='largest acceptable time to converge (s)')
    parser.add_argument('--converge-timeout', type=float, default=120.0,
                        help='give up waiting for convergence after this')
    parser.add_argument('--keep', action='store_true',
                        help='keep the logs of passed runs too')
    parser.add_argument('--capture', choices=('session', 'logical'),
                        default='session',
                        help='capture backend of the host: session events '
                        '(default), or the database\'s log on a private '
                        'server with it on')
    args = parser.parse_args(argv)
    if args.long:
        args.runs = max(args.runs, 50)
    return args


def main(argv=None):
    import logging
    logging.basicConfig(level=logging.CRITICAL)
    args = parse_args(sys.argv[1:] if argv is None else argv)
    backends = ('postgresql', 'mysql') if args.db == 'both' else (args.db,)
    results = []
    stop = threading.Event()

    def _stop(signum, frame):
        _say('signal %d: stopping after the current run', signum)
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    with Node() as node:
        for seed in range(args.seed, args.seed + args.runs):
            for backend in backends:
                if stop.is_set():
                    break
                result = Run(node, backend, seed, duration=args.duration,
                             converge_timeout=args.converge_timeout,
                             capture=args.capture).execute()
                if result.ok and result.converge_seconds > args.target:
                    result.failures.append(
                        'converged in %.1fs > target %.0fs'
                        % (result.converge_seconds, args.target))
                results.append(result)
                _say(result.line())
                if result.ok and not args.keep:
                    shutil.rmtree(result.workdir, ignore_errors=True)
    _say(summary(results))
    return 0 if all(r.ok for r in results) else 1


if __name__ == '__main__':
    sys.exit(main())
