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


"""Pure logic of the capture: allow-list, consolidation, encoding, sink."""

import datetime

import fixtures
import sqlalchemy as sa
from sqlalchemy import orm

import oslo_publish
from oslo_publish import capture
from oslo_publish import exceptions
from oslo_publish import outbox
from oslo_publish import schema
from oslo_publish import wire
from tests import base

metadata = sa.MetaData()
items = sa.Table('items', metadata,
                 sa.Column('id', sa.Integer, primary_key=True),
                 sa.Column('name', sa.String(10)),
                 sa.Column('pw', sa.String(10)),
                 sa.Column('n', sa.Integer))
pairs = sa.Table('pairs', metadata,
                 sa.Column('b', sa.String(5), primary_key=True),
                 sa.Column('a', sa.Integer, primary_key=True),
                 sa.Column('v', sa.Integer))
nokey = sa.Table('nokey', metadata, sa.Column('x', sa.Integer))


def row(id_, name, n=0):
    return {'id': id_, 'name': name, 'n': n}


class TestResolveTables(base.TestCase):

    def resolve(self, tables, excludes=()):
        self.conf.set_override('tables', tables, 'oslo_publish')
        self.conf.set_override('exclude_columns', list(excludes),
                               'oslo_publish')
        return schema.resolve_tables(self.conf, metadata)

    def test_published_table_describes_columns_and_key(self):
        """pk is in key order, columns drop excluded ones, version too."""
        got = self.resolve(['items', 'pairs'], ['items.pw'])
        pt = got['items']
        self.assertEqual(('id',), pt.pk)
        self.assertEqual(('id', 'name', 'n'), pt.columns)
        self.assertEqual(('b', 'a'), got['pairs'].pk)
        self.assertEqual({'pk': ['id'], 'version': pt.version}, pt.header())
        self.assertEqual(wire.schema_version(
            [('id', 'INTEGER'), ('name', 'VARCHAR(10)'), ('n', 'INTEGER')]),
            pt.version)
        self.assertNotEqual(pt.version, self.resolve(['items'])['items']
                            .version)

    def test_unknown_table_names_the_option_and_value(self):
        """A table missing from metadata (and no engine) fails install."""
        err = self.assertRaises(exceptions.ConfigError, self.resolve,
                                ['items', 'ghost'])
        self.assertEqual(('tables', 'ghost'), (err.option, err.value))
        self.assertIn('[oslo_publish] tables', str(err))

    def test_table_without_primary_key_is_refused(self):
        """A table without primary key cannot be published."""
        err = self.assertRaises(exceptions.ConfigError, self.resolve,
                                ['nokey'])
        self.assertEqual('tables', err.option)

    def test_bad_exclude_entries(self):
        """Malformed, foreign, unknown or key columns fail by value."""
        for entry in ('items', 'pairs.v', 'items.ghost', 'items.id'):
            err = self.assertRaises(exceptions.ConfigError, self.resolve,
                                    ['items'], [entry])
            self.assertEqual(('exclude_columns', entry),
                             (err.option, err.value))

    def test_stream_name_defaults(self):
        """The option wins, then the project name."""
        self.assertEqual('oslo_publish_tests', schema.stream_name(self.conf))
        self.conf.set_override('stream', 'nova', 'oslo_publish')
        self.assertEqual('nova', schema.stream_name(self.conf))


class _Sink(object):

    def __init__(self):
        self.staged = []


class TestConsolidate(base.TestCase):

    def setUp(self):
        super().setUp()
        self.conf.set_override('tables', ['items', 'pairs'], 'oslo_publish')
        self.conf.set_override('exclude_columns', ['items.pw'],
                               'oslo_publish')
        self.tables = schema.resolve_tables(self.conf, metadata)
        self.cap = capture.Capture(self.tables, _Sink())

    def run_events(self, *events):
        changes, tables = self.cap._consolidate(None, list(events))
        for change in changes:
            self.assertIn(change['table'], tables)
        return [wire.decode_change(c) for c in changes]

    def ins(self, r):
        return (wire.INSERT, 'items', (r['id'],), None, r, None, True)

    def upd(self, before, after, changed):
        return (wire.UPDATE, 'items', (after['id'],), before, after,
                set(changed), True)

    def dele(self, r):
        return (wire.DELETE, 'items', (r['id'],), r, None, None, True)

    def test_single_operations_pass_through(self):
        """One insert, update and delete come out as they went in."""
        out = self.run_events(
            self.ins(row(1, 'a')),
            self.upd(row(2, 'b'), row(2, 'B'), ['name']),
            self.dele(row(3, 'c')))
        self.assertEqual(['insert', 'update', 'delete'],
                         [c.op for c in out])
        self.assertEqual({'name': 'b'}, out[1].before)
        self.assertEqual(('name',), out[1].changed)
        self.assertEqual(row(2, 'B'), out[1].after)
        self.assertEqual(row(3, 'c'), out[2].before)

    def test_insert_then_update_is_insert_of_final_image(self):
        """insert + update -> one insert carrying the final image."""
        (c,) = self.run_events(self.ins(row(1, 'a')),
                               self.upd(row(1, 'a'), row(1, 'b', 5),
                                        ['name', 'n']))
        self.assertEqual(('insert', row(1, 'b', 5)), (c.op, c.after))

    def test_insert_then_delete_is_nothing(self):
        """insert + delete -> no change at all."""
        self.assertEqual([], self.run_events(self.ins(row(1, 'a')),
                                             self.dele(row(1, 'a'))))

    def test_update_then_delete_keeps_the_original_image(self):
        """update + delete -> delete with the original before-image."""
        (c,) = self.run_events(self.upd(row(1, 'a'), row(1, 'b'), ['name']),
                               self.dele(row(1, 'b')))
        self.assertEqual(('delete', row(1, 'a')), (c.op, c.before))

    def test_two_updates_merge_with_earliest_originals(self):
        """update + update -> changed union, earliest before values."""
        (c,) = self.run_events(
            self.upd(row(1, 'a', 0), row(1, 'b', 0), ['name']),
            self.upd(row(1, 'b', 0), row(1, 'c', 9), ['n']))
        self.assertEqual(('name', 'n'), c.changed)
        self.assertEqual({'name': 'a', 'n': 0}, c.before)
        self.assertEqual(row(1, 'c', 9), c.after)

    def test_update_reverted_in_the_transaction_is_nothing(self):
        """A value changed and changed back publishes nothing."""
        self.assertEqual([], self.run_events(
            self.upd(row(1, 'a'), row(1, 'b'), ['name']),
            self.upd(row(1, 'b'), row(1, 'a'), ['name'])))

    def test_delete_then_insert_is_update_of_all_columns(self):
        """delete + insert of one key -> update over every column."""
        (c,) = self.run_events(self.dele(row(1, 'a', 1)),
                               self.ins(row(1, 'a', 2)))
        self.assertEqual(('update', ('n',), {'n': 1}),
                         (c.op, c.changed, c.before))

    def test_composite_key_is_encoded_in_key_order(self):
        """A composite key travels as a list in primary-key order."""
        changes, tables = self.cap._consolidate(None, [
            (wire.INSERT, 'pairs', ('x', 1), None,
             {'b': 'x', 'a': 1, 'v': None}, None, True)])
        self.assertEqual(['x', 1], changes[0]['key'])
        self.assertEqual(['b', 'a'], tables['pairs']['pk'])

    def test_key_values_not_of_the_plain_type_go_through_the_codec(self):
        """Only int/str keys skip the codec; others are normalised."""
        pt = self.tables['pairs']
        for key in (('x', 1), ('x', True), ('y', '7')):
            changes, _ = self.cap._consolidate(None, [
                (wire.INSERT, 'pairs', key, None,
                 {'b': key[0], 'a': key[1], 'v': None}, None, True)])
            self.assertEqual(pt.encode_key(key), changes[0]['key'])
        self.assertEqual([['x', 1], ['x', 1], ['y', 7]], [
            pt.encode_key(k) for k in (('x', 1), ('x', True), ('y', '7'))])
        # A key value the codec refuses invalidates the table.
        changes, _ = self.cap._consolidate(None, [
            (wire.INSERT, 'pairs', ('x', 'nan?'), None,
             {'b': 'x', 'a': 1, 'v': None}, None, True)])
        self.assertEqual([('pairs', wire.INVALIDATE, 'unencodable')],
                         [(c['table'], c['op'], c['cause'])
                          for c in changes])

    def test_missing_key_and_unencodable_value_invalidate(self):
        """No key or a value the wire cannot encode -> table invalidation."""
        (inv,) = self.run_events((wire.INSERT, 'items', None, None,
                                  row(1, 'a'), None, True))
        self.assertEqual(('items', wire.INVALIDATE, 'no_key'),
                         (inv.table, inv.op, inv.cause))
        (inv,) = self.run_events(self.ins(row(1, object())))
        self.assertEqual(('items', 'unencodable'), (inv.table, inv.cause))

    def test_incomplete_delete_image_invalidates(self):
        """A delete whose before-image lacks columns invalidates the table."""
        (inv,) = self.run_events(self.dele({'id': 1, 'name': 'a'}))
        self.assertEqual(('items', wire.INVALIDATE, 'incomplete_image'),
                         (inv.table, inv.op, inv.cause))

    def test_invalidation_supersedes_row_changes_of_its_table_only(self):
        """Invalidated tables publish one invalidation; others their rows."""
        changes = self.run_events(
            self.ins(row(1, 'a')),
            (wire.INSERT, 'pairs', ('x', 1), None,
             {'b': 'x', 'a': 1, 'v': None}, None, True),
            capture.frames.invalidation_event('items', 'upsert'),
            capture.frames.invalidation_event('items', 'text_dml'))
        self.assertEqual([('pairs', wire.INSERT, None),
                          ('items', wire.INVALIDATE, 'upsert')],
                         [(c.table, c.op, c.cause) for c in changes])

    def test_pk_criteria(self):
        """Single keys use IN; composite keys an OR of ANDs."""
        single = capture.pk_criteria([items.c.id], [(1,), (2,)])
        self.assertIn('IN', str(single))
        composite = capture.pk_criteria([pairs.c.b, pairs.c.a],
                                        [('x', 1), ('y', 2)])
        self.assertIn('OR', str(composite))
        empty = capture.pk_criteria([pairs.c.b, pairs.c.a], [])
        self.assertIn('IN', str(empty))


class TestTextDml(base.TestCase):
    """statements.text_dml_tables: the table a text() statement writes."""

    def test_dml_forms_name_their_table(self):
        """INSERT/UPDATE/DELETE/REPLACE/TRUNCATE forms yield the table."""
        tdt = capture.statements.text_dml_tables
        for sql, table in [
                ('INSERT INTO items (id) VALUES (1)', 'items'),
                ('  update "items" set x = 1', 'items'),
                ('DELETE FROM `nova`.`items` WHERE id = 1', 'nova.items'),
                ('REPLACE INTO items VALUES (1)', 'items'),
                ('INSERT OR REPLACE INTO items VALUES (1)', 'items'),
                ('INSERT IGNORE INTO items VALUES (1)', 'items'),
                ('TRUNCATE TABLE items', 'items'),
                ('WITH x AS (SELECT 1) DELETE FROM items', 'items')]:
            self.assertEqual(table, tdt(sql), sql)

    def test_queries_are_not_dml(self):
        """SELECT and DDL yield None."""
        tdt = capture.statements.text_dml_tables
        for sql in ('SELECT * FROM items', 'CREATE TABLE items (id int)',
                    'select 1 -- update items'):
            self.assertIsNone(tdt(sql), sql)


class TestRows(base.TestCase):
    """rows: plans from mapped classes and the SQLite write lock."""

    def test_mapping_key_uses_attribute_or_column_names(self):
        """A bulk mapping gives its key by attribute name; None if absent."""
        reg = orm.registry()

        class Pair(object):
            pass
        mapper = reg.map_imperatively(Pair, pairs, properties={
            'bee': pairs.c.b})
        conf_tables = schema.resolve_tables(self._conf(['pairs']), metadata)
        plan = capture.rows.Plan(conf_tables['pairs'], mapper, pairs)
        self.assertEqual(('x', 1), plan.mapping_key({'bee': 'x', 'a': 1}))
        self.assertEqual(('x', 1), plan.mapping_key({'b': 'x', 'a': 1}))
        self.assertIsNone(plan.mapping_key({'bee': 'x'}))
        self.assertIsNone(plan.mapping_key({'bee': None, 'a': 1}))

    def _conf(self, tables):
        self.conf.set_override('tables', tables, 'oslo_publish')
        return self.conf

    def test_sqlite_write_lock_holds_off_other_writers(self):
        """After lock_for_write another SQLite writer cannot write."""
        path = self.useFixture(fixtures.TempDir()).path + '/lock.db'
        first = sa.create_engine('sqlite:///' + path)
        second = sa.create_engine('sqlite:///' + path,
                                  connect_args={'timeout': 0.05})
        self.addCleanup(first.dispose)
        self.addCleanup(second.dispose)
        metadata.create_all(first, tables=[items])
        with first.connect() as conn:
            capture.rows.lock_for_write(conn, items)
            self.assertRaises(sa.exc.OperationalError,
                              self._insert, second)
            conn.rollback()
        self._insert(second)

    @staticmethod
    def _insert(engine):
        with engine.begin() as conn:
            conn.execute(items.insert().values(id=1, name='x'))

    def test_read_rows_reads_few_and_many_keys_alike(self):
        """A few keys (a parameter each) and many (expanding): same rows."""
        engine = sa.create_engine('sqlite://')
        self.addCleanup(engine.dispose)
        metadata.create_all(engine, tables=[items, pairs])
        with engine.begin() as conn:
            conn.execute(items.insert(), [
                {'id': n, 'name': 'r%d' % n, 'pw': None, 'n': n}
                for n in range(1, 31)])
            conn.execute(pairs.insert(), [
                {'b': 'x', 'a': n, 'v': n} for n in range(1, 4)])
        tables = schema.resolve_tables(self._conf(['items', 'pairs']),
                                       metadata)
        pt, pairs_pt = tables['items'], tables['pairs']

        def expected(ids):
            return {(n,): {'id': n, 'name': 'r%d' % n, 'pw': None, 'n': n}
                    for n in ids}
        limit = capture.rows._FIXED
        with engine.connect() as conn:
            for ids in ([5], [2, 99, 7], list(range(1, limit + 1)),
                        list(range(1, limit + 3)), list(range(1, 31))):
                got = capture.rows.read_rows(conn, items, pt,
                                             [(n,) for n in ids])
                self.assertEqual(expected(n for n in ids if n != 99), got)
            got = capture.rows.read_rows(conn, items, pt, [(3,)], lock=True)
            self.assertEqual(expected([3]), got)
            got = capture.rows.read_rows(conn, pairs, pairs_pt,
                                         [('x', 1), ('x', 3), ('y', 1)])
            self.assertEqual({('x', 1): {'b': 'x', 'a': 1, 'v': 1},
                              ('x', 3): {'b': 'x', 'a': 3, 'v': 3}}, got)
            self.assertEqual({}, capture.rows.read_rows(conn, items, pt,
                                                        []))


class TestOutboxSink(base.TestCase):

    def test_committed_wakes_and_never_raises(self):
        """committed() calls wake; a failing wake does not propagate."""
        calls = []
        sink = outbox.OutboxSink('s', wake=lambda: calls.append(1))
        sink.committed(None)
        self.assertEqual([1], calls)
        sink.wake = lambda: 1 / 0
        sink.committed(None)
        sink.discarded(None)

    def test_stage_writes_one_row_with_naive_utc_time(self):
        """stage() inserts one row: payload JSON, naive UTC committed_at."""
        engine = sa.create_engine('sqlite://')
        outbox.metadata.create_all(engine)
        sink = outbox.OutboxSink('s')
        when = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=(
            datetime.timezone(datetime.timedelta(hours=2))))
        with orm.Session(engine) as session:
            sink.stage(session, 'tx1', when, [{'table': 't'}],
                       {'t': {'pk': ['id'], 'version': 'v'}})
            session.commit()
        with engine.connect() as conn:
            (got,) = conn.execute(sa.select(outbox.outbox)).all()
        self.assertEqual(datetime.datetime(2026, 1, 1, 10, 0),
                         got.committed_at)
        self.assertEqual(('s', 'tx1', None), (got.stream, got.txid,
                                              got.seq))
        self.assertIn('"changes":[{"table":"t"}]', got.payload)


class TestInstallTargets(base.TestCase):

    def test_plain_session_class_and_other_objects_are_refused(self):
        """install() refuses Session itself and unknown targets."""
        self.conf.set_override('tables', ['items'], 'oslo_publish')
        for target in (orm.Session, object()):
            self.assertRaises(exceptions.UnsupportedTarget,
                              oslo_publish.install, self.conf, target,
                              metadata)

    def test_disabled_returns_an_empty_handle(self):
        """enabled = false installs nothing, even for a bad target."""
        self.conf.set_override('enabled', False, 'oslo_publish')
        handle = oslo_publish.install(self.conf, object())
        self.assertFalse(handle.enabled)
        self.assertEqual({}, handle.tables)
        handle.stop()


class TestActivity(base.TestCase):
    """The capture tells the pacing which transactions are in flight."""

    def setUp(self):
        super().setUp()
        from oslo_publish.relay import pacing
        self.conf.set_override('tables', ['items'], 'oslo_publish')
        self.tables = schema.resolve_tables(self.conf, metadata)
        self.engine = sa.create_engine('sqlite://')
        self.addCleanup(self.engine.dispose)
        metadata.create_all(self.engine)
        self.maker = orm.sessionmaker(bind=self.engine)
        self.activity = pacing.Activity()
        self.cap = capture.Capture(self.tables, _Sink(),
                                   activity=self.activity)
        self.cap.attach(self.maker)
        self.addCleanup(self.cap.detach)

    def test_a_transaction_is_in_flight_until_it_ends(self):
        """Begin counts; commit, rollback, close end it; not savepoints."""
        session = self.maker()
        self.assertFalse(self.activity.active)
        session.execute(sa.select(items.c.id))
        self.assertTrue(self.activity.active)
        with session.begin_nested():
            session.execute(sa.select(items.c.id))
        self.assertTrue(self.activity.active)
        session.commit()
        self.assertFalse(self.activity.active)
        session.execute(sa.select(items.c.id))
        self.assertTrue(self.activity.active)
        session.rollback()
        self.assertFalse(self.activity.active)
        session.execute(sa.select(items.c.id))
        session.close()
        self.assertFalse(self.activity.active)
        self.assertTrue(self.activity.wait_idle(0))

    def test_a_commit_is_over_before_the_relay_is_woken(self):
        """The sink's committed() (the wake-up) sees no transaction.

        Otherwise a relay woken at once would pace itself for the very
        transaction that woke it.
        """
        seen = []

        class Sink(object):
            def stage(sink, session, txid, committed_at, changes, tables):
                pass

            def committed(sink, session):
                seen.append(self.activity.active)

            def discarded(sink, session):
                pass

        self.cap.detach()
        self.cap = capture.Capture(self.tables, Sink(),
                                   activity=self.activity)
        self.cap.attach(self.maker)
        with self.maker() as session:
            session.execute(items.insert().values(id=1, name='x'))
            self.assertTrue(self.activity.active)
            session.commit()
        self.assertEqual([False], seen)
        self.assertFalse(self.activity.active)
