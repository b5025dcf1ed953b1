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

"""``capture = logical`` on PostgreSQL: staging, watermark, crashes.

A private cluster with ``wal_level = logical`` (:mod:`tests.private_pg`);
the relay runs in this process and publishes to a recording publisher,
so the tests compare what was published, seq by seq, with the tables.
"""

import os
import signal
import subprocess
import sys
import threading

import fixtures
from oslo_config import cfg
import sqlalchemy as sa

from oslo_publish.cmd import manage
from oslo_publish import exceptions
from oslo_publish import logcapture
from oslo_publish.logcapture import pgoutput
from oslo_publish.logcapture import staging
from oslo_publish import migration
from oslo_publish import options
from oslo_publish import outbox
from oslo_publish import relay as relay_mod
from oslo_publish import schema
from oslo_publish import wire
from tests import base
from tests.functional import watermark
from tests import private_pg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

DDL = ('CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL, '
       'n integer NOT NULL DEFAULT 0, price numeric(10, 2), '
       'secret text)')


class RecordingPublisher(object):
    """Keeps every delta transaction published, by seq."""

    def __init__(self):
        self.lock = threading.Lock()
        self.transactions = {}
        self.messages = []

    def publish(self, event_type, payload):
        with self.lock:
            self.messages.append(payload)
            if event_type == wire.EVENT_DELTA:
                for tx in payload['transactions']:
                    self.transactions.setdefault(tx['seq'], tx)

    def replay(self, upto=None):
        """{key: after} of applying every transaction with seq <= upto."""
        with self.lock:
            seqs = sorted(self.transactions)
            rows = {}
            for seq in seqs:
                if upto is not None and seq > upto:
                    break
                for change in self.transactions[seq]['changes']:
                    key = tuple(change['key'])
                    if change['op'] == wire.DELETE:
                        rows.pop(key, None)
                    else:
                        rows[key] = change['after']
            return rows, seqs


def make_conf(stream):
    conf = cfg.ConfigOpts()
    options.register_opts(conf)
    conf([], project='test_logical', default_config_files=[])
    for name, value in (('tables', ['items']),
                        ('exclude_columns', ['items.secret']),
                        ('stream', stream), ('capture', 'logical'),
                        ('relay_poll_interval', 0.05),
                        ('heartbeat_interval', 60.0)):
        conf.set_override(name, value, 'oslo_publish')
    return conf


def start_staging(case, publisher=None, run_relay=True, stream_row=False):
    """Start a relay and the stager reading the log into it, for ``case``.

    The relay publishes to ``publisher`` (by default a
    :class:`RecordingPublisher`), and runs unless ``run_relay`` is
    false; with ``stream_row`` the stream's row is made before the
    stager starts (as the relay's first cycle would). ``case`` provides
    ``conf``, ``engine``, ``stream`` and ``tables``; both stop at the
    case's cleanup.
    """
    case.publisher = RecordingPublisher() if publisher is None else publisher
    case.relay = relay_mod.Relay(case.conf, case.engine, case.stream,
                                 case.tables, case.publisher)
    if stream_row:
        with case.relay.holding():
            pass
    if run_relay:
        case.relay.start()
        case.addCleanup(case.relay.stop)
    case.stager = logcapture.attach(case.conf, case.engine, case.tables,
                                    case.stream, case.relay)
    case.addCleanup(case.stager.stop)


def terminate_sessions(engine):
    """End every other session of the database and the walsenders.

    What a server restart does to the clients; the engine's pool is
    emptied too.
    """
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level='AUTOCOMMIT')
        conn.exec_driver_sql(
            'SELECT pg_terminate_backend(pid) FROM pg_stat_activity '
            'WHERE pid <> pg_backend_pid() AND datname = '
            "current_database() OR backend_type = 'walsender'")
    engine.dispose()


class _LogicalCase(private_pg.LogicalPGMixin, base.TestCase):

    def setUp(self):
        super().setUp()
        self.url = self.private_database()
        self.engine = sa.create_engine(self.url, pool_size=10)
        self.addCleanup(self.engine.dispose)
        with self.engine.begin() as conn:
            conn.exec_driver_sql(DDL)
        migration.upgrade(self.engine)
        self.stream = base.unique_name('lg')
        self.base_conf = self.conf
        self.conf = make_conf(self.stream)
        self.tables = schema.resolve_tables(self.conf, engine=self.engine)
        pgoutput.Reader.setup(self.conf, self.engine, self.tables,
                              self.stream)

    def start_relay(self):
        start_staging(self)
        self.assertTrue(self.stager.streaming.wait(30))

    def catch_up(self, timeout=60):
        """Wait until every transaction committed so far is staged."""
        pgoutput.catch_up(self.engine, self.stream, timeout)

    def settle(self):
        self.catch_up()
        self.assertTrue(self.relay.wait_drained(60))

    def table(self, conn=None):
        pt = self.tables['items']
        query = sa.select(*[pt.table.c[c] for c in pt.columns])
        if conn is None:
            with self.engine.connect() as conn:
                got = conn.execute(query).mappings().all()
        else:
            got = conn.execute(query).mappings().all()
        return {tuple(pt.encode_key([r[c] for c in pt.pk])):
                pt.encode_row(dict(r)) for r in got}


class TestStagingPostgreSQL(_LogicalCase):

    def test_deltas_match_the_table_seq_by_seq(self):
        """Every committed change, once, gapless, excluded column gone."""
        self.start_relay()
        with self.engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO items SELECT g, 'i' || g, 0, g * 1.25, 'pw' "
                "FROM generate_series(1, 30) g")
        with self.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE items SET n = n + 1, name = 'x' "
                                 "WHERE id <= 10")
            conn.exec_driver_sql('DELETE FROM items WHERE id > 25')
        with self.engine.connect() as conn:
            conn.exec_driver_sql("INSERT INTO items VALUES (99, 'r', 0, "
                                 "NULL, 'pw')")
            conn.rollback()
        self.settle()
        rows, seqs = self.publisher.replay()
        self.assertEqual(self.table(), rows)
        self.assertEqual([1, 2], seqs)
        for tx in self.publisher.transactions.values():
            for change in tx['changes']:
                for image in ('after', 'before'):
                    self.assertNotIn('secret', change.get(image) or {})
        update = [c for c in self.publisher.transactions[2]['changes']
                  if c['op'] == 'update'][0]
        self.assertEqual(['name', 'n'], update['changed'])
        self.assertEqual({'name': 'i%d' % update['key'][0], 'n': 0},
                         update['before'])

    def test_added_column_publishes_a_new_schema_version(self):
        """DDL while streaming: the next changes carry the new version."""
        self.start_relay()
        with self.engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO items VALUES (1, 'a', 0, "
                                 "NULL, NULL)")
        self.settle()
        old = self.publisher.transactions[1]
        with self.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE items ADD COLUMN zone text "
                                 "NOT NULL DEFAULT 'nova'")
        with self.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE items SET zone = 'az1' WHERE "
                                 "id = 1")
        self.settle()
        new = self.publisher.transactions[2]
        self.assertEqual('az1', new['changes'][0]['after']['zone'])
        self.assertEqual(['zone'], new['changes'][0]['changed'])
        self.assertNotIn('secret', new['changes'][0]['after'])
        versions = [m['tables']['items']['version']
                    for m in self.publisher.messages
                    if m.get('kind') == 'delta']
        self.assertEqual(2, len(set(versions)))
        self.assertNotIn('zone', old['changes'][0]['after'])
        reflected = schema.resolve_tables(self.conf, engine=self.engine)
        self.assertEqual(reflected['items'].version, versions[-1])

    def test_model_without_a_column_keeps_its_version(self):
        """Contract step: the model drops a column before the database.

        The log's first Relation still lists the column; that is no DDL,
        so the deltas keep the model's version (the one the snapshot
        server uses) and the DROP COLUMN publishes no other version.
        """
        model = sa.MetaData()
        sa.Table('items', model, sa.Column('id', sa.Integer,
                                           primary_key=True),
                 sa.Column('name', sa.Text, nullable=False),
                 sa.Column('price', sa.Numeric(10, 2)),
                 sa.Column('secret', sa.Text))
        self.tables = schema.resolve_tables(self.conf, metadata=model,
                                            engine=self.engine)
        version = self.tables['items'].version
        self.start_relay()
        with self.engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO items VALUES (1, 'a', 0, "
                                 "NULL, NULL)")
        self.settle()
        with self.engine.begin() as conn:
            conn.exec_driver_sql('ALTER TABLE items DROP COLUMN n')
        with self.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE items SET name = 'b'")
        self.settle()
        versions = [m['tables']['items']['version']
                    for m in self.publisher.messages
                    if m.get('kind') == 'delta']
        self.assertEqual([version], sorted(set(versions)))
        self.assertNotIn('n', self.publisher.transactions[1]['changes'][0]
                         ['after'])
        self.assertEqual('b', self.publisher.transactions[2]['changes'][0]
                         ['after']['name'])

    def test_server_closing_every_connection_loses_nothing(self):
        """Connections killed (a restart's effect): the stager resumes."""
        self.start_relay()
        with self.engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO items VALUES (1, 'a', 0, "
                                 "NULL, NULL)")
        self.settle()
        for n in range(2, 5):
            terminate_sessions(self.engine)
            with self.engine.begin() as conn:
                conn.exec_driver_sql("INSERT INTO items VALUES (%d, 'b', 0, "
                                     "NULL, NULL)" % n)
        self.settle()
        rows, seqs = self.publisher.replay()
        self.assertEqual(self.table(), rows)
        self.assertEqual([1, 2, 3, 4], seqs)

    def test_redelivered_transactions_are_not_staged_twice(self):
        """Staged but not confirmed (a crash): the log sends it again."""
        reader = pgoutput.Reader(self.conf, self.engine, self.tables,
                                 self.stream)
        stager = staging.Stager(self.engine, self.stream, reader)
        with self.engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO items VALUES (1, 'a', 0, "
                                 "NULL, NULL)")
        reader.start(stager.staged_position())
        got = []
        base.wait_for(lambda: got.extend(reader.read(0.2)) or got, 30)
        original = reader.confirm
        reader.confirm = lambda position: None   # dies before confirming
        self.assertEqual(1, stager.stage(got))
        reader.confirm = original
        reader.close()
        reader.start(None)   # from the slot: it was never confirmed
        again = []
        base.wait_for(lambda: again.extend(reader.read(0.2)) or again, 30)
        self.assertEqual([t.position for t in got],
                         [t.position for t in again])
        self.assertEqual(got[0].changes, again[0].changes)
        self.assertEqual(0, stager.stage(again))
        with self.engine.connect() as conn:
            self.assertEqual(1, conn.execute(
                sa.select(sa.func.count()).select_from(outbox.outbox))
                .scalar())
        reader.close()

    def test_watermark_under_concurrent_writers(self):
        """Snapshot rows == deltas up to N, while four writers run."""
        self.start_relay()

        def write(conn, rng):
            for _ in range(rng.randint(1, 3)):
                key = rng.randint(1, 40)
                choice = rng.random()
                if choice < 0.5:
                    conn.exec_driver_sql(
                        "INSERT INTO items VALUES (%(k)s, 'w', 0, 1.5, 's') "
                        "ON CONFLICT (id) DO UPDATE SET n = items.n + 1, "
                        "name = 'u' || items.n", {'k': key})
                elif choice < 0.8:
                    conn.exec_driver_sql(
                        'UPDATE items SET n = n + 1 WHERE id = %(k)s',
                        {'k': key})
                else:
                    conn.exec_driver_sql(
                        'DELETE FROM items WHERE id = %(k)s', {'k': key})

        watermark.check_under_writers(self, write, watermark.repeatable_read,
                                      writers=4, rounds=6, first=0)
        self.settle()
        rows, seqs = self.publisher.replay()
        self.assertEqual(self.table(), rows)
        self.assertEqual(list(range(1, len(seqs) + 1)), seqs)


class TestLogicalConfig(_LogicalCase):

    def test_direct_delivery_is_refused_naming_the_option(self):
        self.conf.set_override('delivery', 'direct', 'oslo_publish')
        exc = self.assertRaises(exceptions.ConfigError,
                                logcapture.check_config,
                                self.conf, self.engine)
        self.assertIn('delivery', str(exc))

    def test_sqlite_is_refused_naming_the_option(self):
        engine = sa.create_engine('sqlite://')
        self.addCleanup(engine.dispose)
        exc = self.assertRaises(exceptions.ConfigError,
                                logcapture.check_config,
                                self.conf, engine)
        self.assertIn('capture', str(exc))


class TestLostSlotPostgreSQL(_LogicalCase):
    """The relay stayed down past ``max_slot_wal_keep_size``."""

    pg_settings = (('max_slot_wal_keep_size', '1MB'),
                   ('wal_keep_size', '0'))

    def test_lost_slot_starts_a_new_epoch(self):
        """The server invalidated the slot: new slot, new epoch, going on."""
        self.start_relay()
        with self.engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO items VALUES (1, 'a', 0, "
                                 "NULL, NULL)")
        self.settle()
        epoch = self.relay.stream_lock.read_position()[1]
        self.stager.stop()
        slot = pgoutput.object_name(self.stream)
        with self.engine.connect() as conn:
            conn = conn.execution_options(isolation_level='AUTOCOMMIT')
            for n in range(4):
                conn.exec_driver_sql(
                    "INSERT INTO items SELECT g, repeat('y', 500), 0, g, "
                    "'s' FROM generate_series(%d, %d) g"
                    % (n * 3000 + 10, n * 3000 + 3009))
                conn.exec_driver_sql('SELECT pg_switch_wal()')
                conn.exec_driver_sql('CHECKPOINT')
            status = conn.exec_driver_sql(
                'SELECT wal_status FROM pg_replication_slots WHERE '
                'slot_name = %(n)s', {'n': slot}).scalar()
        self.assertEqual('lost', status)
        self.stager.start()
        base.wait_for(lambda: self.relay.stream_lock.read_position()[1]
                      != epoch, 60, message='no new epoch')
        self.assertTrue(self.stager.streaming.wait(30))
        with self.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE items SET n = 5 WHERE id = 1")
        self.settle()
        last = self.publisher.transactions[max(self.publisher.transactions)]
        self.assertEqual(5, last['changes'][0]['after']['n'])


class TestSigkillPostgreSQL(_LogicalCase):

    def test_sigkill_mid_large_transaction_stages_identical_content(self):
        """Killed while reading a large transaction: staged once, same."""
        env = dict(os.environ, PYTHONPATH=ROOT)
        args = [sys.executable, '-m', 'tests.functional.logical_stager',
                self.url, self.stream]
        with self.engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO items SELECT g, repeat('x', 200), 0, g, 's' "
                "FROM generate_series(1, 20000) g")
        proc = subprocess.Popen(args, cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, text=True)
        self.addCleanup(proc.wait)
        self.addCleanup(_kill, proc)
        self.assertEqual('streaming', proc.stdout.readline().strip())
        with self.engine.begin() as conn:
            conn.exec_driver_sql('UPDATE items SET n = n + 1')
        # Killed while decoding the 20000-row update (no entry yet) or
        # right after staging the insert.
        base.wait_for(lambda: self._staged_count() >= 1, 60)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        first = self._entries()
        reader = pgoutput.Reader(self.conf, self.engine, self.tables,
                                 self.stream)
        stager = staging.Stager(self.engine, self.stream, reader)
        reader.start(stager.staged_position())
        base.wait_for(lambda: stager.stage(reader.read(0.5)) or
                      self._staged_count() == 2, 120)
        reader.close()
        entries = self._entries()
        self.assertEqual(first, entries[:len(first)])
        self.assertEqual(2, len(entries))
        self.assertLess(entries[0][0], entries[1][0])
        update = wire.decode_change(entries[1][3]['changes'][0])
        self.assertEqual(20000, len(entries[1][3]['changes']))
        self.assertEqual(1, update.after['n'])

    def _staged_count(self):
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(
                outbox.outbox)).scalar()

    def _entries(self):
        import json
        with self.engine.connect() as conn:
            return [(r.log_position, r.xid, r.txid, json.loads(r.payload))
                    for r in conn.execute(sa.select(outbox.outbox)
                                          .order_by(outbox.outbox.c.id))]


def _kill(proc):
    if proc.poll() is None:
        proc.kill()


class TestCommandsPostgreSQL(_LogicalCase):
    """oslo-publish-manage capture-setup and the standalone relay."""

    def write_config(self, url=None):
        tf = self.useFixture(base.TransportFixture(self.base_conf))
        self.tf = tf
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'svc.conf')
        with open(path, 'w') as f:
            f.write('[DEFAULT]\ntransport_url = %s\ncontrol_exchange = %s\n'
                    '[database]\nconnection = %s\n'
                    '[oslo_publish]\nstream = %s\ntopics = %s\n'
                    'tables = items\nexclude_columns = items.secret\n'
                    'capture = logical\nsnapshot_server = false\n'
                    'relay_poll_interval = 0.05\n'
                    % (tf.url, tf.exchange, url or self.url, self.stream,
                       tf.topic))
        return path

    def _published(self):
        with self.engine.connect() as conn:
            return conn.execute(sa.select(outbox.streams.c.last_seq).where(
                outbox.streams.c.stream == self.stream)).scalar() or 0

    def test_capture_setup_and_drop(self):
        path = self.write_config()
        slot = pgoutput.object_name(self.stream)
        self.assertEqual(0, manage.main(['--config-file', path,
                                         'capture-drop']))
        with self.engine.connect() as conn:
            self.assertIsNone(conn.exec_driver_sql(
                'SELECT 1 FROM pg_replication_slots WHERE slot_name = '
                '%(n)s', {'n': slot}).first())
        self.assertEqual(0, manage.main(['--config-file', path,
                                         'capture-setup']))
        self.assertEqual(0, manage.main(['--config-file', path,
                                         'capture-setup']))
        with self.engine.connect() as conn:
            self.assertEqual('pgoutput', conn.exec_driver_sql(
                'SELECT plugin FROM pg_replication_slots WHERE slot_name '
                '= %(n)s', {'n': slot}).scalar())
            self.assertEqual(['items'], conn.exec_driver_sql(
                'SELECT tablename FROM pg_publication_tables WHERE '
                'pubname = %(n)s', {'n': slot}).scalars().all())
            self.assertEqual('f', conn.exec_driver_sql(
                "SELECT relreplident FROM pg_class WHERE relname = "
                "'items'").scalar())

    def test_capture_setup_names_wal_level(self):
        """The machine's server runs wal_level=replica: refused, named."""
        db = self.useFixture(base.DatabaseFixture('postgresql'))
        with db.engine.begin() as conn:
            conn.exec_driver_sql(DDL)
        path = self.write_config(db.url)
        err = self.useFixture(fixtures.StringStream('stderr'))
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', err.stream))
        self.assertEqual(2, manage.main(['--config-file', path,
                                         'capture-setup']))
        err.stream.flush()
        self.assertIn('wal_level must be logical',
                      err.getDetails()['stderr'].as_text())

    def test_standalone_relay_sigkill_resumes_without_gap(self):
        path = self.write_config()
        args = [sys.executable, '-m', 'oslo_publish.cmd.relay',
                '--config-file', path]

        def spawn():
            proc = subprocess.Popen(args, cwd=ROOT,
                                    stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            self.addCleanup(proc.wait)
            self.addCleanup(_kill, proc)
            return proc

        proc = spawn()
        with self.engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO items VALUES (1, 'a', 0, "
                                 "NULL, 'pw')")
        base.wait_for(lambda: self._published() == 1, 60,
                      message='the standalone relay published nothing')
        # A large transaction, killed while it is decoded or staged.
        with self.engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO items SELECT g, 'big', 0, g, 's' "
                "FROM generate_series(2, 20001) g")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with self.engine.begin() as conn:
            conn.exec_driver_sql("UPDATE items SET n = 1 WHERE id = 1")
        spawn()
        base.wait_for(lambda: self._published() == 3, 120,
                      message='not resumed after SIGKILL')
        with self.engine.connect() as conn:
            self.assertEqual(0, conn.execute(
                outbox.count_unpublished(self.stream)).scalar())
