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

"""The encoding contract: one encoding per column, whatever the path.

One type matrix, on each database, through the four paths a row takes
to a consumer: a delta published by the in-process relay, a delta
published by the standalone ``oslo-publish-relay`` process, a snapshot
page from the in-process snapshot server and one from the standalone
relay's. Every path must give the same wire values, which decode to
what the host stores (read back through its model); a consumer fed by
all of them then counts no drift at a periodic resync.
"""

import datetime
import decimal
import enum
import math
import os
import subprocess
import sys
import uuid

import fixtures
import oslo_messaging
from testtools import content
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.dialects import postgresql
from sqlalchemy import orm

from consumer import listener
from consumer import service
import oslo_publish
from oslo_publish.logcapture import pgoutput
from oslo_publish import migration
from oslo_publish import wire
from tests import base
from tests.functional import delivery
from tests import private_pg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
TABLE = 'enc_values'
#: Batch B repeats batch A's values at these ids.
OFFSET = 100
BIG = 10 * 1024 * 1024


class Color(enum.Enum):
    red = 1
    dark_blue = 2


def _model(backend):
    class Base(orm.DeclarativeBase):
        pass

    attrs = {
        '__tablename__': TABLE,
        '__table_args__': {'mysql_engine': 'InnoDB',
                           'mysql_charset': 'utf8mb4'},
        'id': sa.Column(sa.Integer, primary_key=True, autoincrement=False),
        'flag': sa.Column(sa.Boolean),
        'small': sa.Column(sa.Integer),
        'big': sa.Column(sa.BigInteger),
        'money': sa.Column(sa.Numeric(12, 3)),
        'ratio': sa.Column(sa.Float),
        'label': sa.Column(sa.String(64)),
        'body': sa.Column(sa.Text().with_variant(mysql.LONGTEXT(),
                                                 'mysql', 'mariadb')),
        'doc': sa.Column(sa.JSON),
        'color': sa.Column(sa.Enum(Color, name='enc_color')),
        'naive': sa.Column(sa.DateTime),
        'aware': sa.Column(sa.DateTime(timezone=True)),
        'day': sa.Column(sa.Date),
        'clock': sa.Column(sa.Time),
        'span': sa.Column(sa.Interval),
        'blob': sa.Column(sa.LargeBinary),
        'uid': sa.Column(sa.Uuid),
    }
    if backend == 'postgresql':
        attrs['docb'] = sa.Column(postgresql.JSONB)
        attrs['tags'] = sa.Column(postgresql.ARRAY(sa.Integer))
    return Base, type('Value', (Base,), attrs)


MODELS = {backend: _model(backend) for backend in base.BACKENDS}
#: ``[oslo_publish] metadata`` of the standalone relay, per backend.
METADATA = {backend: models[0].metadata
            for backend, models in MODELS.items()}
METADATA_SQLITE = METADATA['sqlite']
METADATA_POSTGRESQL = METADATA['postgresql']
METADATA_MYSQL = METADATA['mysql']

_PLUS2 = datetime.timezone(datetime.timedelta(hours=2))


def _rows(backend):
    """The type matrix: ``{id: values}`` as the host's code sets them."""
    full = {
        'flag': True, 'small': -7, 'big': 2 ** 62 + 1,
        'money': decimal.Decimal('1234.56789'), 'ratio': 1.23456789,
        'label': 'na\u00efve \U0001f40d \U0001d11e',
        'body': 'text with \U0001f600 and \u00fc',
        'doc': {'b': [1, 2.5, None], 'a': '\u00fc\U0001f600',
                'n': {'z': True}},
        'color': Color.dark_blue,
        'naive': datetime.datetime(2026, 1, 2, 3, 4, 5, 678901),
        'aware': datetime.datetime(2026, 1, 2, 3, 4, 5, 678901,
                                   tzinfo=_PLUS2),
        'day': datetime.date(2026, 2, 28),
        'clock': datetime.time(23, 59, 58, 123456),
        'span': datetime.timedelta(days=2, seconds=3, microseconds=456789),
        'blob': b'\xff\x00\xfe\x80 not utf-8 \xc3',
        'uid': uuid.UUID('3f0c9a1b-2d4e-4f60-8a7b-9c0d1e2f3a4b'),
    }
    if backend == 'postgresql':
        full.update(docb={'k': [1, {'x': 'y'}], 'a': 1.5},
                    tags=[3, 1, 2])
    rows = {1: full, 2: {},
            3: {'flag': False, 'small': 0, 'ratio': -0.0,
                'money': decimal.Decimal('-2.71828'),
                'color': Color.red, 'label': '',
                'naive': datetime.datetime(1999, 12, 31, 23, 59, 59),
                'span': datetime.timedelta(0)},
            4: {'body': ('0123456789abcdef' * (BIG // 16 - 1))
                + '\U0001f600' * 4}}
    if backend != 'mysql':  # MariaDB refuses NaN and infinities
        rows.update({5: {'ratio': float('nan')}, 6: {'ratio': float('inf')},
                     7: {'ratio': float('-inf')}})
    return rows


def _same(a, b):
    """Equality where NaN equals NaN."""
    if isinstance(a, float) and isinstance(b, float) and \
            math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


class _ContractTests(object):

    RESYNC_INTERVAL = 4.0

    def setUp(self):
        super().setUp()
        delivery.wait_for_broker()
        self.tf = self.useFixture(base.TransportFixture(self.conf))
        self.stream = base.unique_name('enc')
        self.pool = base.unique_name('pool')
        delivery.durable_broker(self.conf)
        for name, value in (('tables', [TABLE]), ('stream', self.stream),
                            ('topics', [self.tf.topic]),
                            ('heartbeat_interval', 0.2),
                            ('relay_poll_interval', 0.05),
                            ('snapshot_page_size', 3)):
            self.conf.set_override(name, value, 'oslo_publish')
        if self.BACKEND == 'sqlite':
            with self.engine.connect() as conn:
                conn.exec_driver_sql('PRAGMA journal_mode=WAL')
        self.model = MODELS[self.BACKEND][1]
        METADATA[self.BACKEND].create_all(self.engine)
        migration.upgrade(self.engine)
        self.maker = orm.sessionmaker(bind=self.engine)
        transport = oslo_messaging.get_notification_transport(self.conf)
        self.addCleanup(transport.cleanup)
        self.receiver = self.useFixture(delivery.Receiver(transport,
                                                          self.tf))
        self.rpc = oslo_messaging.get_rpc_transport(
            self.conf, allowed_remote_exmods=['oslo_publish.exceptions'])
        self.addCleanup(self.rpc.cleanup)
        self.addCleanup(delivery.delete_queues, self.tf.url,
                        [wire.snapshot_topic(self.stream), self.pool])
        self.client = oslo_messaging.get_rpc_client(
            self.rpc, oslo_messaging.Target(
                topic=wire.snapshot_topic(self.stream),
                namespace=wire.SNAPSHOT_NAMESPACE,
                version=wire.SNAPSHOT_API_VERSION), timeout=60)

    # ------------------------------------------------------------ helpers

    def write(self, offset):
        rows = _rows(self.BACKEND)
        with self.maker.begin() as session:
            for row_id, values in rows.items():
                session.add(self.model(id=row_id + offset, **values))
        return {row_id + offset for row_id in rows}

    def delta_rows(self, ids):
        """``{id: encoded after-image}`` of ``ids`` from the deltas."""
        def got():
            out = {}
            for tx in self.receiver.transactions():
                for change in tx['changes']:
                    key = change['key'][0]
                    if change['table'] == TABLE and key in ids:
                        out[key] = change['after']
            return out
        base.wait_for(lambda: set(got()) == ids, 60,
                      message='deltas of %s not received' % sorted(ids))
        return got()

    def snapshot_rows(self):
        """``{id: encoded row}`` read page by page over RPC."""
        opened = self.client.call({}, 'snapshot_open', tables=[TABLE])
        rows, after = {}, None
        while True:
            page = self.client.call({}, 'snapshot_page',
                                    snapshot_id=opened['snapshot_id'],
                                    table=TABLE, after=after)
            for row in page['rows']:
                rows[row['id']] = row
            after = page['next']
            if after is None:
                return rows

    def host_rows(self):
        """``{id: values}`` as the host's model reads them back."""
        with self.maker() as session:
            return {obj.id: {c: getattr(obj, c)
                             for c in self.model.__table__.columns.keys()}
                    for obj in session.scalars(sa.select(self.model))}

    def install(self, **options):
        for name, value in options.items():
            self.conf.set_override(name, value, 'oslo_publish')
        handle = oslo_publish.install(self.conf, self.maker,
                                      metadata=METADATA[self.BACKEND])
        self.addCleanup(handle.stop)
        return handle

    def start_relay_process(self):
        """Run oslo-publish-relay with the host's models named."""
        path = os.path.join(self.useFixture(
            fixtures.TempDir()).path, 'relay.conf')
        with open(path, 'w') as f:
            f.write('[DEFAULT]\ntransport_url = %s\ncontrol_exchange = %s\n'
                    '[database]\nconnection = %s\n'
                    '[oslo_publish]\nstream = %s\ntopics = %s\n'
                    'tables = %s\nrelay_poll_interval = 0.05\n'
                    'heartbeat_interval = 0.2\nsnapshot_page_size = 3\n'
                    'snapshot_server = true\n'
                    'metadata = tests.functional.test_encoding_contract:'
                    'METADATA_%s\n'
                    '[oslo_messaging_rabbit]\namqp_durable_queues = true\n'
                    % (self.tf.url, self.tf.exchange, self.db.url,
                       self.stream, self.tf.topic, TABLE,
                       self.BACKEND.upper()))
        log_path = self.relay_log = os.path.join(os.path.dirname(path),
                                                 'relay.log')
        log = open(log_path, 'w')
        self.addCleanup(log.close)
        self.addOnException(lambda exc_info: self.addDetail(
            'relay-log', content.text_content(open(log_path).read()[-20000:])))
        proc = subprocess.Popen(
            [sys.executable, '-m', 'oslo_publish.cmd.relay',
             '--config-file', path], cwd=ROOT,
            stdout=log, stderr=log)
        self.addCleanup(proc.wait)
        self.addCleanup(proc.terminate)
        return proc

    def start_consumer(self):
        listener.prepare_transport_conf(self.conf)
        for name, value in (('streams', [self.stream]),
                            ('topics', [self.tf.topic]),
                            ('pool', self.pool),
                            ('gap_timeout', 3.0),
                            ('inactivity_timeout', 30.0),
                            ('resync_interval', self.RESYNC_INTERVAL),
                            ('resync_backoff_min', 0.05),
                            ('resync_backoff_max', 0.5),
                            ('snapshot_timeout', 60.0),
                            ('max_message_bytes', 64 * 1024 * 1024)):
            self.conf.set_override(name, value, 'consumer')
        if getattr(self, 'state_db', None) is None:
            self.state_db = self.useFixture(
                base.DatabaseFixture('postgresql'))
        self.conf.set_override('connection', self.state_db.url,
                               'consumer_database')
        consumer = service.Consumer(self.conf)
        consumer.start()
        self.addCleanup(self.stop_consumer, consumer)
        return consumer

    @staticmethod
    def stop_consumer(consumer):
        if not consumer._stopping.is_set():
            consumer.stop()

    def wait_applied(self, consumer):
        applied = max(tx['seq'] for tx in self.receiver.transactions())
        base.wait_for(lambda: consumer.status()[0]['applied_seq']
                      >= applied, 60, message='consumer did not apply')

    def resyncs(self, consumer, cause):
        return consumer.metrics.value('consumer_resyncs_total',
                                      stream=self.stream, cause=cause)

    # -------------------------------------------------------------- tests

    def test_every_path_encodes_every_column_alike(self):
        """Deltas and snapshots, in-process or standalone, agree exactly."""
        handle = self.install(relay_in_process=True, snapshot_server=True)
        consumer = self.start_consumer()
        self.assertTrue(consumer.wait_synced(60))
        batch_a = self.write(0)
        delta_in = self.delta_rows(batch_a)
        self.wait_applied(consumer)
        # Stopped while the relays change hands; its successor resumes
        # from the state store (a resync in the switch would time out).
        self.stop_consumer(consumer)
        snap_in = self.snapshot_rows()
        # The standalone relay takes over with no moment where nobody
        # serves snapshots (the consumer resyncs periodically).
        proc = self.start_relay_process()
        base.wait_for(lambda: proc.poll() is not None or 'relay running'
                      in open(self.relay_log).read(), 60,
                      message='oslo-publish-relay did not start')
        handle.stop()

        self.install(relay_in_process=False, snapshot_server=False)
        batch_b = self.write(OFFSET)
        delta_out = self.delta_rows(batch_b)
        base.wait_for(lambda: proc.poll() is not None or
                      set(self._try_snapshot()) >= batch_a | batch_b, 60,
                      message='standalone snapshot server not answering')
        self.assertIsNone(proc.poll(), 'oslo-publish-relay exited')
        snap_out = self.snapshot_rows()

        host = self.host_rows()
        for row_id in sorted(batch_a):
            paths = {
                'delta/in-process': delta_in[row_id],
                'delta/standalone': delta_out[row_id + OFFSET],
                'snapshot/in-process': snap_in[row_id],
                'snapshot/standalone': snap_out[row_id],
                'snapshot/standalone (batch B)': snap_out[row_id + OFFSET],
            }
            reference = dict(paths['snapshot/in-process'], id=None)
            for path, row in paths.items():
                self.assertEqual(reference, dict(row, id=None),
                                 'row %d via %s' % (row_id, path))
            decoded = wire.decode_row(snap_in[row_id])
            for column, stored in host[row_id].items():
                if isinstance(stored, enum.Enum):
                    stored = stored.name
                self.assertTrue(_same(stored, decoded[column]),
                                'row %d column %s: host stores %r, the '
                                'wire says %r' % (row_id, column, stored,
                                                  decoded[column]))

        # The consumer mirrored all of it; a periodic resync through the
        # standalone relay finds nothing different.
        consumer = self.start_consumer()
        self.wait_applied(consumer)
        before = self.resyncs(consumer, 'periodic')
        # Counted when they start, one at a time: the first of these two
        # started after all was applied, and ended before the second.
        base.wait_for(lambda: self.resyncs(consumer, 'periodic')
                      >= before + 2, 60, message='no periodic resync')
        self.assertEqual(0, consumer.metrics.value(
            'consumer_drift_rows_total', stream=self.stream, table=TABLE))
        mirror = dict(consumer.view().rows(TABLE))
        self.assertEqual(set(host), {k[0] for k in mirror})
        self.stop_consumer(consumer)

    def _try_snapshot(self):
        try:
            return self.snapshot_rows()
        except oslo_messaging.MessagingTimeout:
            return {}


class TestEncodingContractSQLite(_ContractTests, base.BackendTestCase):
    BACKEND = 'sqlite'


class TestEncodingContractPostgreSQL(_ContractTests, base.BackendTestCase):
    BACKEND = 'postgresql'


class TestEncodingContractMySQL(_ContractTests, base.BackendTestCase):
    BACKEND = 'mysql'


class TestEncodingContractLogicalPostgreSQL(private_pg.LogicalPGMixin,
                                            _ContractTests, base.TestCase):
    """``capture = logical``: the log's deltas encode like the rest.

    On a private cluster with ``wal_level = logical``: batch A is
    captured from the sessions, batch B (the same values) from the log
    (pgoutput, values through psycopg2's typecasters); both deltas and
    the snapshot pages of both batches must carry identical wire values.
    """

    BACKEND = 'postgresql'

    def setUp(self):
        self.db = _PrivateDatabase(self)
        self.engine = self.db.engine
        super().setUp()

    def test_every_path_encodes_every_column_alike(self):
        handle = self.install(relay_in_process=True, snapshot_server=True)
        batch_a = self.write(0)
        delta_session = self.delta_rows(batch_a)
        handle.stop()
        tables = oslo_publish.resolve_tables(
            self.conf, METADATA_POSTGRESQL, self.engine)
        pgoutput.Reader.setup(self.conf, self.engine, tables, self.stream)
        self.install(capture='logical', relay_in_process=True,
                     snapshot_server=True)
        batch_b = self.write(OFFSET)
        delta_log = self.delta_rows(batch_b)
        snap = self.snapshot_rows()
        for row_id in sorted(batch_a):
            paths = {
                'delta/session': delta_session[row_id],
                'delta/logical': delta_log[row_id + OFFSET],
                'snapshot (batch B)': snap[row_id + OFFSET],
            }
            reference = dict(snap[row_id], id=None)
            for path, row in paths.items():
                self.assertEqual(reference, dict(row, id=None),
                                 'row %d via %s' % (row_id, path))


class _PrivateDatabase(object):
    """A database of the case's private logical cluster."""

    def __init__(self, case):
        self.url = case.private_database()
        self.engine = sa.create_engine(self.url)
        case.addCleanup(self.engine.dispose)


class TestEncodingContractBinlog(base.TestCase):
    """The MariaDB row binlog path gives session capture's exact values.

    One session writes the matrix (insert), changes every column
    (update) and removes it (delete) with session capture on; the
    binlog reader (``capture = logical``) on the private binlog server
    must return, transaction by transaction, the very changes session
    capture put in the outbox.
    """

    def setUp(self):
        super().setUp()
        from tests import private_mariadb
        self.db = self.useFixture(private_mariadb.DatabaseFixture())
        self.engine = self.db.engine
        for name, value in (('tables', [TABLE]), ('stream', 'enc_bl'),
                            ('relay_in_process', False),
                            ('snapshot_server', False)):
            self.conf.set_override(name, value, 'oslo_publish')
        self.conf.set_override('transport_url', 'fake://')
        METADATA['mysql'].create_all(self.engine)
        migration.upgrade(self.engine)
        self.maker = orm.sessionmaker(bind=self.engine)
        self.model = MODELS['mysql'][1]

    def outbox_changes(self):
        from oslo_publish import outbox
        import json
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(outbox.outbox.c.payload)
                                .order_by(outbox.outbox.c.id)).scalars()
            return [json.loads(p) for p in rows]

    def test_binlog_path_encodes_like_session_capture(self):
        from oslo_publish.logcapture import binlog
        from oslo_publish import schema
        from tests.functional import test_binlog_reader
        handle = oslo_publish.install(self.conf, self.maker,
                                      metadata=METADATA['mysql'])
        self.addCleanup(handle.stop)
        published = schema.resolve_tables(self.conf, METADATA['mysql'],
                                          self.engine)
        reader = binlog.Reader(self.conf, self.engine, published, 'enc_bl')
        self.addCleanup(reader.close)
        reader.start(None)
        rows = _rows('mysql')
        with self.maker.begin() as session:
            for row_id, values in rows.items():
                session.add(self.model(id=row_id, **values))
        # Every row takes another row's values: every column changes
        # somewhere (and NULLs become values and back).
        ids = sorted(rows)
        with self.maker.begin() as session:
            for obj in session.scalars(sa.select(self.model)):
                donor = rows[ids[(ids.index(obj.id) + 1) % len(ids)]]
                for column in self.model.__table__.columns.keys():
                    if column != 'id':
                        setattr(obj, column, donor.get(column))
        with self.maker.begin() as session:
            for obj in session.scalars(sa.select(self.model)):
                session.delete(obj)
        staged = self.outbox_changes()
        self.assertEqual(3, len(staged))
        logged = test_binlog_reader.collect(reader, 3, timeout=60)
        for op, session_tx, log_tx in zip(('insert', 'update', 'delete'),
                                          staged, logged):
            self.assertEqual({op}, {c['op'] for c in log_tx.changes},
                             [c for c in log_tx.changes
                              if c['op'] == 'invalidate'])
            self.assertEqual(session_tx['tables'], log_tx.tables)
            by_key = {tuple(c['key']): c for c in log_tx.changes}
            self.assertEqual(len(session_tx['changes']), len(by_key))
            for change in session_tx['changes']:
                self.assertEqual(change, by_key[tuple(change['key'])],
                                 '%s of row %s' % (op, change['key']))
