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


"""Capture of every statement form: exact where possible, else invalidated.

Each test proves that the host's statement commits and what the
transaction's delta contains, on PostgreSQL, MariaDB and SQLite.
"""

import logging
import threading

import fixtures
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite
from sqlalchemy import exc as sa_exc

from oslo_publish import wire
from tests import base
from tests.functional import test_capture as tc

Item = tc.Item
Pair = tc.Pair


def _names(maker):
    with maker() as s:
        return {i.id: i.name for i in s.query(Item)}


class _FormTests(tc._Base):

    def setUp(self):
        super().setUp()
        self.handle = self.install()

    def clear(self):
        with self.engine.begin() as conn:
            conn.execute(tc.outbox.outbox.delete())

    def ops(self):
        return [(c.table, c.op, c.key, c.cause) for c in self.one_tx()]

    def invalidations(self, cause):
        return self.handle.metrics.value(
            'oslo_publish_capture_invalidations_total', stream='capture',
            table='items', cause=cause)

    def upsert(self, values):
        table = Item.__table__
        if self.BACKEND == 'postgresql':
            stmt = postgresql.insert(table).values(**values)
            return stmt.on_conflict_do_update(
                index_elements=['id'], set_={'name': stmt.excluded.name})
        if self.BACKEND == 'sqlite':
            stmt = sqlite.insert(table).values(**values)
            return stmt.on_conflict_do_update(
                index_elements=['id'], set_={'name': stmt.excluded.name})
        stmt = mysql.insert(table).values(**values)
        return stmt.on_duplicate_key_update(name=stmt.inserted.name)

    # ------------------------------------------------------- INSERT forms

    def test_insert_from_select_is_captured_row_by_row(self):
        """Core INSERT ... SELECT commits and publishes each new row."""
        a, b = self.add_items('a', 'b')
        table = Item.__table__
        sel = sa.select(table.c.id + 100, table.c.name + '-copy')
        with self.maker() as s:
            result = s.execute(table.insert().from_select(
                ['id', 'name'], sel))
            self.assertEqual(2, result.rowcount)
            s.commit()
        self.assertEqual(
            [('items', 'insert', (a + 100,), None),
             ('items', 'insert', (b + 100,), None)],
            sorted(self.ops()))
        self.assertEqual('a-copy', _names(self.maker)[a + 100])
        for change in self.one_tx():
            self.assertEqual(self.db_row(Item, change.key[0]),
                             change.after)

    def test_orm_insert_from_select_is_captured(self):
        """An ORM-enabled insert(Model).from_select commits, rows exact."""
        (a,) = self.add_items('a')
        with self.maker() as s:
            s.execute(sa.insert(Item).from_select(
                ['id', 'name'], sa.select(Item.id + 50, Item.name)))
            s.commit()
        self.assertEqual([('items', 'insert', (a + 50,), None)],
                         self.ops())

    def test_upsert_commits_and_invalidates_the_table(self):
        """An upsert commits; its delta is one invalidation (upsert)."""
        (a,) = self.add_items('a')
        with self.maker() as s:
            s.execute(self.upsert({'id': a, 'name': 'up'}))
            s.execute(self.upsert({'id': a + 1, 'name': 'new'}))
            s.commit()
        self.assertEqual({a: 'up', a + 1: 'new'}, _names(self.maker))
        self.assertEqual([('items', wire.INVALIDATE, None, 'upsert')],
                         self.ops())
        self.assertEqual(1, self.invalidations('upsert'))

    def test_insert_returning_without_key_invalidates(self):
        """INSERT ... RETURNING without the key commits and invalidates."""
        if not self.engine.dialect.insert_returning:
            self.skipTest('no INSERT ... RETURNING')
        table = Item.__table__
        with self.maker() as s:
            got = s.execute(table.insert().values(name='r').returning(
                table.c.name)).all()
            s.commit()
        self.assertEqual([('r',)], [tuple(r) for r in got])
        self.assertEqual([('items', wire.INVALIDATE, None, 'insert_no_key')],
                         self.ops())

    def test_host_errors_are_still_the_hosts(self):
        """A statement failing in the database raises its own error."""
        (a,) = self.add_items('a')
        with self.maker() as s:
            self.assertRaises(
                sa_exc.IntegrityError, s.execute,
                Item.__table__.insert().values(id=a, name='dup'))
            s.rollback()
        self.assertEqual([], self.entries())

    # ------------------------------------------------------- UPDATE forms

    def test_primary_key_changing_update_invalidates(self):
        """A bulk UPDATE changing keys commits; the table is invalidated."""
        a, b = self.add_items('a', 'b')
        table = Item.__table__
        with self.maker() as s:
            s.execute(table.update().where(table.c.id == a).values(
                id=a + 1000))
            s.commit()
        self.assertEqual({a + 1000: 'a', b: 'b'}, _names(self.maker))
        self.assertEqual([('items', wire.INVALIDATE, None, 'pk_update')],
                         self.ops())

    def test_text_dml_on_published_table_is_detected(self):
        """DML in text() commits, is logged by table and invalidates it."""
        (a,) = self.add_items('a')
        logger = self.useFixture(fixtures.FakeLogger(level=logging.WARNING))
        with self.maker() as s:
            s.execute(sa.text('UPDATE items SET name = :n WHERE id = :i'),
                      {'n': 'txt', 'i': a})
            s.execute(sa.text('SELECT * FROM items'))
            s.commit()
        self.assertEqual('txt', _names(self.maker)[a])
        self.assertEqual([('items', wire.INVALIDATE, None, 'text_dml')],
                         self.ops())
        self.assertIn('published table items', logger.output)
        self.assertEqual(1, self.invalidations('text_dml'))

    def test_text_dml_on_other_table_is_not_invalidated(self):
        """DML in text() on an unpublished table publishes nothing."""
        with self.engine.begin() as conn:
            conn.execute(sa.text('CREATE TABLE other_t (id INTEGER)'))
        with self.maker() as s:
            s.execute(sa.text('INSERT INTO other_t (id) VALUES (1)'))
            s.commit()
        self.assertEqual([], self.entries())

    def test_unexpected_capture_error_degrades_to_invalidation(self):
        """A failure inside capture never fails the host's statement."""
        a, b = self.add_items('a', 'b')
        logger = self.useFixture(fixtures.FakeLogger(level=logging.ERROR))

        def broken(*args, **kwargs):
            raise RuntimeError('injected capture fault')
        self.useFixture(fixtures.MonkeyPatch(
            'oslo_publish.capture.rows.read_rows', broken))
        with self.maker() as s:
            count = s.query(Item).filter(Item.id == a).update(
                {'name': 'bulk'}, synchronize_session=False)
            s.commit()
        self.assertEqual(1, count)
        self.assertEqual('bulk', _names(self.maker)[a])
        self.assertEqual([('items', wire.INVALIDATE, None, 'capture_error')],
                         self.ops())
        self.assertIn('injected capture fault', logger.output)

    # ------------------------------------------------------- bulk helpers

    def test_bulk_insert_mappings_are_captured(self):
        """Session.bulk_insert_mappings publishes the inserted rows."""
        with self.maker() as s:
            s.bulk_insert_mappings(Item, [{'id': 1, 'name': 'x'},
                                          {'id': 2, 'name': 'y'}])
            s.commit()
        changes = self.one_tx()
        self.assertEqual([('insert', (1,)), ('insert', (2,))],
                         sorted((c.op, c.key) for c in changes))
        for change in changes:
            self.assertEqual(self.db_row(Item, change.key[0]),
                             change.after)

    def test_bulk_insert_mappings_without_keys_invalidate(self):
        """Generated keys not returned: the table is invalidated."""
        with self.maker() as s:
            s.bulk_insert_mappings(Item, [{'name': 'x'}])
            s.commit()
        self.assertEqual([('items', wire.INVALIDATE, None, 'bulk_no_key')],
                         self.ops())

    def test_bulk_update_mappings_are_captured(self):
        """Session.bulk_update_mappings publishes before and after."""
        a, b = self.add_items('a', 'b')
        with self.maker() as s:
            s.bulk_update_mappings(Item, [{'id': a, 'name': 'A'},
                                          {'id': b, 'name': 'b'}])
            s.commit()
        first, second = sorted(self.one_tx(), key=lambda c: c.key)
        self.assertEqual(('update', (a,), 'a', 'A'),
                         (first.op, first.key, first.before['name'],
                          first.after['name']))
        # b's name is unchanged; its server-side revision + 1 is not.
        self.assertEqual(('update', (b,), ('revision',)),
                         (second.op, second.key, second.changed))
        self.assertEqual(self.db_row(Item, b), second.after)

    def test_bulk_save_objects_are_captured(self):
        """Session.bulk_save_objects publishes inserts and updates."""
        (a,) = self.add_items('a')
        with self.maker() as s:
            old = s.get(Item, a)
            old.name = 'changed'
            s.expunge(old)
            s.bulk_save_objects([old, Item(id=a + 10, name='fresh'),
                                 Pair(region='x', num=1, value='p')])
            s.commit()
        self.assertEqual(
            [('items', 'insert', (a + 10,)), ('items', 'update', (a,)),
             ('pairs', 'insert', ('x', 1))],
            sorted((c.table, c.op, c.key) for c in self.one_tx()))

    def test_bulk_helpers_are_restored_on_stop(self):
        """After stop() the session class has its own bulk helpers again."""
        cls = self.maker.class_
        self.assertIn('bulk_insert_mappings', cls.__dict__)
        self.handle.stop()
        self.assertNotIn('bulk_insert_mappings', cls.__dict__)


class TestFormsSQLite(_FormTests, base.BackendTestCase):
    BACKEND = 'sqlite'


class TestFormsPostgreSQL(_FormTests, base.BackendTestCase):
    BACKEND = 'postgresql'


class TestFormsMySQL(_FormTests, base.BackendTestCase):
    BACKEND = 'mysql'


class TestSQLiteBulkRace(tc._Base, base.BackendTestCase):
    """Concurrent ORM and bulk writers on SQLite (file database)."""

    BACKEND = 'sqlite'

    def clear(self):
        with self.engine.begin() as conn:
            conn.execute(tc.outbox.outbox.delete())

    def test_bulk_update_sees_rows_entering_its_where_set(self):
        """Replaying the deltas in commit order yields the host table."""
        with self.maker() as s:
            s.add_all([Item(id=i, name='h%d' % (i % 3)) for i in range(30)])
            s.commit()
        snapshot = _names(self.maker)
        self.clear()
        engine = sa.create_engine(self.db.url,
                                  connect_args={'timeout': 60})
        self.addCleanup(engine.dispose)
        maker = sa.orm.sessionmaker(bind=engine)
        self.install(maker)
        errors = []
        stop = threading.Event()

        def mover(seed):
            try:
                for n in range(300):
                    with maker() as s:
                        item = s.get(Item, (seed * 7 + n * 13) % 30)
                        item.name = 'h%d' % ((n + seed) % 3)
                        s.commit()
            except Exception as exc:  # noqa: reported by the test
                errors.append(exc)
            finally:
                stop.set()

        def bulk():
            try:
                n = 0
                while not stop.is_set():
                    with maker() as s:
                        s.query(Item).filter(
                            Item.name == 'h%d' % (n % 3)).update(
                            {'name': 'h%d' % ((n + 1) % 3)},
                            synchronize_session=False)
                        s.commit()
                    n += 1
            except Exception as exc:  # noqa: reported by the test
                errors.append(exc)

        threads = [threading.Thread(target=mover, args=(1,)),
                   threading.Thread(target=mover, args=(2,)),
                   threading.Thread(target=bulk),
                   threading.Thread(target=bulk)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        self.assertEqual([], errors)
        mirror = {k: {'name': v, 'revision': 1} for k, v in snapshot.items()}
        for change in self.changes():
            self.assertNotEqual(wire.INVALIDATE, change.op)
            key = change.key[0]
            if change.op == wire.DELETE:
                mirror.pop(key, None)
                continue
            if change.op == wire.UPDATE and change.after['revision'] == \
                    change.before.get('revision', -2) + 1:
                # The before-image was the row's state when written: a
                # change made unseen shows here as a stale mirror row.
                self.assertEqual(
                    mirror[key], {'name': change.before.get(
                        'name', mirror[key]['name']),
                        'revision': change.before['revision']}, change)
            mirror[key] = {c: change.after[c] for c in ('name', 'revision')}
        mirror = {k: v['name'] for k, v in mirror.items()}
        self.assertEqual(_names(self.maker), mirror)
