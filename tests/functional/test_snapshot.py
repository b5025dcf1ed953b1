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

"""The snapshot server: consistent pages plus a watermark, and limits."""

import json
import random
import threading
import uuid

import oslo_messaging
import sqlalchemy as sa
from sqlalchemy import orm

import oslo_publish
from oslo_publish import exceptions
from oslo_publish import outbox
from oslo_publish import relay as relay_mod
from oslo_publish import schema
from oslo_publish import snapshot
from oslo_publish import snapshot_auth
from oslo_publish import wire
from tests import base
from tests.functional import delivery

SHARED = 10


def _tables(metadata):
    items = sa.Table(
        'items', metadata,
        sa.Column('id', sa.Integer, primary_key=True, autoincrement=False),
        sa.Column('name', sa.String(64)),
        sa.Column('n', sa.Integer, nullable=False, default=0),
        sa.Column('secret', sa.String(64)),
        mysql_engine='InnoDB')
    pairs = sa.Table(
        'pairs', metadata,
        sa.Column('a', sa.Integer, primary_key=True, autoincrement=False),
        sa.Column('b', sa.String(32), primary_key=True),
        sa.Column('v', sa.Integer),
        mysql_engine='InnoDB')
    return items, pairs


class _Writer(object):
    """Writes rows and their outbox entry in one transaction.

    This is what the capture does: the entry is written after the
    transaction's own DML, so per-row commit order holds.
    """

    def __init__(self, engine, stream, published):
        self.engine = engine
        self.stream = stream
        self.published = published
        self.items = published['items'].table
        self.pairs = published['pairs'].table

    def _row(self, conn, table, where):
        row = conn.execute(sa.select(table).where(where)).one()._mapping
        columns = [c for c in self.published[table.name].columns]
        return {c: row[c] for c in columns}

    def _entry(self, conn, changes):
        tables = {c['table']: self.published[c['table']].header()
                  for c in changes}
        conn.execute(outbox.outbox.insert().values(
            stream=self.stream, txid=uuid.uuid4().hex,
            committed_at=relay_mod.utcnow(),
            payload=json.dumps({'changes': changes, 'tables': tables})))

    def transaction(self, ops):
        """Run ``ops`` (callables conn -> change) and commit; retry busy."""
        for attempt in range(50):
            try:
                with self.engine.begin() as conn:
                    changes = [op(conn) for op in ops]
                    self._entry(conn, [c for c in changes if c])
                return
            except sa.exc.OperationalError:
                if self.engine.dialect.name == 'sqlite' or attempt < 3:
                    continue
                raise

    def insert_item(self, item_id, name):
        def op(conn):
            conn.execute(self.items.insert().values(
                id=item_id, name=name, n=0, secret='s'))
            after = self._row(conn, self.items, self.items.c.id == item_id)
            return {'table': 'items', 'op': wire.INSERT, 'key': [item_id],
                    'after': wire.encode_row(after)}
        return op

    def bump_item(self, item_id):
        def op(conn):
            conn.execute(self.items.update()
                         .where(self.items.c.id == item_id)
                         .values(n=self.items.c.n + 1))
            after = self._row(conn, self.items, self.items.c.id == item_id)
            return {'table': 'items', 'op': wire.UPDATE, 'key': [item_id],
                    'after': wire.encode_row(after),
                    'before': {'n': after['n'] - 1}, 'changed': ['n']}
        return op

    def delete_item(self, item_id):
        def op(conn):
            where = self.items.c.id == item_id
            before = self._row(conn, self.items, where)
            conn.execute(self.items.delete().where(where))
            return {'table': 'items', 'op': wire.DELETE, 'key': [item_id],
                    'before': wire.encode_row(before)}
        return op

    def upsert_pair(self, a, b, v, insert):
        def op(conn):
            where = sa.and_(self.pairs.c.a == a, self.pairs.c.b == b)
            if insert:
                conn.execute(self.pairs.insert().values(a=a, b=b, v=v))
            else:
                conn.execute(self.pairs.update().where(where).values(v=v))
            after = self._row(conn, self.pairs, where)
            change = {'table': 'pairs', 'key': [a, b],
                      'after': wire.encode_row(after)}
            if insert:
                change['op'] = wire.INSERT
            else:
                change.update(op=wire.UPDATE, before={}, changed=['v'])
            return change
        return op


class _SessionWriter(object):
    """Writes through sessions of a captured sessionmaker (real capture).

    Core statements executed through the session; the capture writes the
    outbox entry at commit.
    """

    def __init__(self, maker, published):
        self.maker = maker
        self.items = published['items'].table
        self.pairs = published['pairs'].table

    def transaction(self, ops):
        for attempt in range(50):
            try:
                with self.maker() as session:
                    for op in ops:
                        op(session)
                    session.commit()
                return
            except sa.exc.OperationalError:
                if self.maker.kw['bind'].dialect.name == 'sqlite' \
                        or attempt < 3:
                    continue
                raise

    def insert_item(self, item_id, name):
        return lambda s: s.execute(self.items.insert().values(
            id=item_id, name=name, n=0, secret='s'))

    def bump_item(self, item_id):
        return lambda s: s.execute(
            self.items.update().where(self.items.c.id == item_id)
            .values(n=self.items.c.n + 1))

    def delete_item(self, item_id):
        return lambda s: s.execute(
            self.items.delete().where(self.items.c.id == item_id))

    def upsert_pair(self, a, b, v, insert):
        if insert:
            return lambda s: s.execute(self.pairs.insert().values(
                a=a, b=b, v=v))
        return lambda s: s.execute(
            self.pairs.update().where(self.pairs.c.a == a)
            .where(self.pairs.c.b == b).values(v=v))


class SnapshotTestMixin(delivery.RelayTestMixin):
    """A relay, a started snapshot server and an RPC client."""

    def setUp(self):
        super().setUp()
        self.conf.set_override('exclude_columns', ['items.secret'],
                               'oslo_publish')
        self.conf.set_override('tables', ['items', 'pairs'],
                               'oslo_publish')
        self.conf.set_override('snapshot_page_size', 7, 'oslo_publish')
        self.conf.set_override('batch_size', 20, 'oslo_publish')
        metadata = sa.MetaData()
        _tables(metadata)
        metadata.create_all(self.engine)
        self.published = schema.resolve_tables(self.conf, metadata)
        self.writer = _Writer(self.engine, self.stream, self.published)
        self.rpc_transport = oslo_messaging.get_rpc_transport(
            self.conf, allowed_remote_exmods=['oslo_publish.exceptions'])
        self.addCleanup(self.rpc_transport.cleanup)
        self.addCleanup(delivery.delete_queues, self.tf.url,
                        [wire.snapshot_topic(self.stream)])
        self.relay = self.make_relay()
        self.client = oslo_messaging.get_rpc_client(
            self.rpc_transport, oslo_messaging.Target(
                topic=wire.snapshot_topic(self.stream),
                namespace=wire.SNAPSHOT_NAMESPACE,
                version=wire.SNAPSHOT_API_VERSION), timeout=30)

    def start_server(self):
        server = snapshot.SnapshotServer(
            self.conf, self.engine, self.stream, self.published,
            self.relay, self.rpc_transport, self.metrics)
        self.addCleanup(delivery.delete_queues, self.tf.url, [
            '%s.%s' % (wire.snapshot_topic(self.stream), server.name)])
        server.start()
        self.addCleanup(server.stop)
        return server

    def call(self, method, **kwargs):
        """An RPC call; ``snapshot_open`` signed as a consumer signs it.

        Each open names a client of its own unless ``client`` is given.
        """
        if method == 'snapshot_open' and 'auth' not in kwargs:
            client = kwargs.pop('client', None) or uuid.uuid4().hex
            kwargs['auth'] = snapshot_auth.request_auth(
                self.conf.oslo_publish.signing_key, self.stream,
                list(kwargs.get('tables') or []), client)
        return self.client.call({}, method, **kwargs)

    def read_snapshot(self, tables=None):
        """Open, read every page; return (watermark, rows, pages)."""
        opened = self.call('snapshot_open', tables=tables)
        rows, pages = {}, []
        for name, info in opened['tables'].items():
            after = None
            rows[name] = {}
            while True:
                page = self.call('snapshot_page',
                                 snapshot_id=opened['snapshot_id'],
                                 table=name, after=after)
                pages.append((name, page))
                for row in page['rows']:
                    decoded = wire.decode_row(row)
                    key = tuple(decoded[c] for c in info['pk'])
                    rows[name][key] = decoded
                after = page['next']
                if after is None:
                    break
        return opened['watermark'], rows, pages

    def db_rows(self):
        out = {}
        for name, published in self.published.items():
            cols = [published.table.c[c] for c in published.columns]
            with self.engine.connect() as conn:
                out[name] = {
                    tuple(r._mapping[c] for c in published.pk): dict(
                        r._mapping)
                    for r in conn.execute(sa.select(*cols))}
        return out


def _apply(state, transactions):
    for tx in sorted(transactions, key=lambda t: t['seq']):
        for change in tx['changes']:
            decoded = wire.decode_change(change)
            rows = state.setdefault(decoded.table, {})
            if decoded.op == wire.DELETE:
                rows.pop(decoded.key, None)
            else:
                rows[decoded.key] = decoded.after
    return state


class _SnapshotTests(SnapshotTestMixin):

    def test_snapshot_plus_later_deltas_equals_tables(self):
        """Snapshot at N plus deltas > N equals the tables (4 writers)."""
        self.relay.start()
        self.addCleanup(self.relay.stop)
        self.start_server()
        self._converge(self.writer, self.relay.wake)

    def test_captured_writes_converge(self):
        """Same through install(): real capture, relay and server."""
        self.conf.set_override('stream', self.stream, 'oslo_publish')
        maker = orm.sessionmaker(bind=self.engine)
        handle = oslo_publish.install(
            self.conf, maker, transport=self.transport, metrics=self.metrics,
            metadata=self.published['items'].table.metadata)
        self.addCleanup(delivery.delete_queues, self.tf.url, [
            '%s.%s' % (wire.snapshot_topic(self.stream),
                       handle.snapshot_server.name)])
        self.addCleanup(handle.stop)
        self._converge(_SessionWriter(maker, self.published), lambda: None)

    def _converge(self, writer, wake):
        writer.transaction([writer.insert_item(i, 'shared%d' % i)
                            for i in range(1, SHARED + 1)])
        stop = threading.Event()
        done = []

        def write(wid):
            rnd = random.Random(wid)
            own, count = [], 0
            while not stop.is_set() or count < 8:
                count += 1
                choice = rnd.random()
                w = writer
                if choice < 0.35:
                    ops = [w.bump_item(rnd.randint(1, SHARED))]
                elif choice < 0.6 or not own:
                    own.append(wid * 1000 + count)
                    ops = [w.insert_item(own[-1], 'w%d' % wid),
                           w.upsert_pair(wid, 'k%d' % count, count, True)]
                elif choice < 0.8:
                    ops = [w.delete_item(own.pop(0)),
                           w.bump_item(rnd.randint(1, SHARED))]
                else:
                    pair = 'k%d' % (own[-1] - wid * 1000)
                    ops = [w.bump_item(own[-1]),
                           w.upsert_pair(wid, pair, -count, False)]
                w.transaction(ops)
                done.append(1)
                wake()

        writers = [threading.Thread(target=write, args=(n,))
                   for n in range(1, 5)]
        for t in writers:
            t.start()
        try:
            base.wait_for(lambda: len(done) >= 20, 60)
            watermark, snap, _pages = self.read_snapshot()
            snap_copy = {n: dict(rows) for n, rows in snap.items()}
            at_snapshot = len(done)
            base.wait_for(lambda: len(done) >= at_snapshot + 20, 60)
        finally:
            stop.set()
            for t in writers:
                t.join()
        wake()
        base.wait_for(lambda: delivery.pending(self.engine, self.stream)
                      == 0, 60)
        total = delivery.last_seq(self.engine, self.stream)
        self.assertGreater(total, watermark)
        self.receiver.wait_seqs(total, 60)
        txs = {tx['seq']: tx for tx in self.receiver.transactions()}
        self.assertEqual(list(range(1, total + 1)), sorted(txs))
        after = [tx for seq, tx in txs.items() if seq > watermark]
        self.assertEqual(self.db_rows(), _apply(snap, after))
        upto = [tx for seq, tx in txs.items() if seq <= watermark]
        self.assertEqual(snap_copy, _apply({'items': {}, 'pairs': {}}, upto))

    def test_watermark_covers_what_a_dead_relay_numbered(self):
        """Entries a dead relay numbered are republished before N.

        A relay dies after the broker confirmed item 1's entry and before
        marking it; item 2 commits; the snapshot's watermark covers both
        and the bus holds each number once, each for one transaction.
        """
        self.useFixture(delivery.DieBeforeMark())
        self.writer.transaction([self.writer.insert_item(1, 'a')])
        self.assertRaises(delivery.RelayDied, self.relay.run_once)
        self.writer.transaction([self.writer.insert_item(2, 'b')])
        self.start_server()
        watermark, snap, _pages = self.read_snapshot()
        self.assertEqual(2, watermark)
        self.assertEqual(2, delivery.last_seq(self.engine, self.stream))
        self.assertEqual(0, delivery.pending(self.engine, self.stream))
        self.assertEqual([1, 2], self.receiver.wait_seqs(2))
        base.wait_for(lambda: len(self.receiver.transactions()) >= 3)
        got = self.receiver.transactions()
        delivery.assert_gapless(self, got, 2)
        self.assertEqual(snap, _apply({'items': {}, 'pairs': {}}, got))
        self.assertEqual([(1,), (2,)], sorted(snap['items']))

    def test_pages_are_capped_ordered_and_filtered(self):
        """Pages hold at most page_size rows, in key order, no excluded."""
        self.start_server()
        self.writer.transaction([self.writer.insert_item(i, 'n%d' % i)
                                 for i in range(1, 17)])
        self.writer.transaction([
            self.writer.upsert_pair(a, b, a, True)
            for a in (2, 1) for b in ('y', 'x', 'z')])
        watermark, rows, pages = self.read_snapshot()
        self.assertEqual(2, watermark)
        self.assertEqual([7, 7, 2], [len(p['rows']) for n, p in pages
                                     if n == 'items'])
        self.assertEqual(list(range(1, 17)), [k[0] for k in rows['items']])
        self.assertEqual([(1, 'x'), (1, 'y'), (1, 'z'), (2, 'x'), (2, 'y'),
                          (2, 'z')], list(rows['pairs']))
        self.assertEqual({'id', 'name', 'n'}, set(rows['items'][(1,)]))
        self.assertEqual(self.db_rows(), rows)
        self.assertEqual(0, delivery.pending(self.engine, self.stream))

    def test_definitions_are_taken_before_the_transaction(self):
        """A table re-learnt while a snapshot opens is not mixed in.

        A log reader replaces a table's definition after it read DDL
        (here: another column set, another version). The snapshot
        announces, and serves every page with, the definitions it took
        before its transaction opened; the next snapshot the new ones.
        """
        server = self.start_server()
        self.writer.transaction([self.writer.insert_item(i, 'n%d' % i)
                                 for i in range(1, 10)])
        declared = self.published['items']
        relearnt = schema.PublishedTable('items', declared.table,
                                         declared.excluded | {'n'})
        self.assertNotEqual(declared.version, relearnt.version)
        opening = server._open_session

        def open_then_relearn(*args, **kwargs):
            out = opening(*args, **kwargs)
            self.published['items'] = relearnt
            return out
        server._open_session = open_then_relearn
        opened = self.call('snapshot_open', tables=['items'])
        self.assertEqual({'pk': ['id'], 'version': declared.version,
                          'columns': declared.column_types()},
                         opened['tables']['items'])
        page = self.call('snapshot_page', snapshot_id=opened['snapshot_id'],
                         table='items', after=None)
        self.assertEqual({'id', 'name', 'n'},
                         set(wire.decode_row(page['rows'][0])))
        again = self.call('snapshot_open', tables=['items'])
        self.assertEqual(relearnt.version,
                         again['tables']['items']['version'])

    def test_refuses_unlisted_tables(self):
        """A table outside the allow-list is refused with its name."""
        self.start_server()
        exc = self.assertRaises(exceptions.SnapshotError, self.call,
                                'snapshot_open',
                                tables=['items', 'oslo_publish_outbox'])
        self.assertIn('oslo_publish_outbox', str(exc))
        self.assertEqual(1, self.metrics.value(
            'oslo_publish_snapshots_refused_total', stream=self.stream,
            reason='unknown_table'))

    def test_refuses_too_many_concurrent_snapshots(self):
        """Beyond max_concurrent_snapshots requests are refused."""
        self.conf.set_override('max_concurrent_snapshots', 1,
                               'oslo_publish')
        self.start_server()
        first = self.call('snapshot_open', tables=['items'])
        exc = self.assertRaises(exceptions.SnapshotError, self.call,
                                'snapshot_open', tables=['items'])
        self.assertIn('max_concurrent_snapshots', str(exc))
        self.assertEqual(1, self.metrics.value(
            'oslo_publish_snapshots_refused_total', stream=self.stream,
            reason='busy'))
        self.assertEqual({'closed': True}, self.call(
            'snapshot_close', snapshot_id=first['snapshot_id']))
        self.assertIn('snapshot_id', self.call('snapshot_open'))

    def test_idle_timeout_closes_snapshot(self):
        """An unread snapshot is closed after snapshot_idle_timeout."""
        self.conf.set_override('snapshot_idle_timeout', 1.0, 'oslo_publish')
        server = self.start_server()
        opened = self.call('snapshot_open', tables=['items'])
        self.assertEqual(1, server.open_count())
        base.wait_for(lambda: server.open_count() == 0, 10)
        self.assertRaises(exceptions.SnapshotError, self.call,
                          'snapshot_page', snapshot_id=opened['snapshot_id'],
                          table='items', after=None)

    def test_last_page_closes_and_responses_are_signed(self):
        """Reading every page closes it; responses carry signatures."""
        self.conf.set_override('signing_key', 'sn4p', 'oslo_publish')
        server = self.start_server()
        self.writer.transaction([self.writer.insert_item(1, 'a')])
        opened = self.call('snapshot_open', tables=['items'])
        wire.check_signature(opened, 'sn4p')
        self.assertEqual(1, opened['watermark'])
        self.assertEqual(
            self.published['items'].column_types(),
            opened['tables']['items']['columns'])
        page = self.call('snapshot_page', snapshot_id=opened['snapshot_id'],
                         table='items', after=None)
        wire.check_signature(page, 'sn4p')
        self.assertIsNone(page['next'])
        self.assertEqual(0, server.open_count())
        base.wait_for(lambda: [d for d in self.receiver.deltas()
                               if d['last_seq'] == 1])


class TestSnapshotSQLite(_SnapshotTests, base.BackendTestCase):
    BACKEND = 'sqlite'


class TestSnapshotPostgreSQL(_SnapshotTests, base.BackendTestCase):
    BACKEND = 'postgresql'

    def test_pages_forwarded_to_owner(self):
        """With two servers on a stream, every page reaches the owner."""
        first = self.start_server()
        second = self.start_server()
        self.assertNotEqual(first.name, second.name)
        self.writer.transaction([self.writer.insert_item(i, 'n%d' % i)
                                 for i in range(1, 41)])
        for _ in range(3):
            _watermark, rows, pages = self.read_snapshot(['items'])
            self.assertEqual(self.db_rows()['items'], rows['items'])
            self.assertEqual(6, len(pages))
        self.assertEqual(0, first.open_count() + second.open_count())


class TestSnapshotMySQL(_SnapshotTests, base.BackendTestCase):
    BACKEND = 'mysql'
