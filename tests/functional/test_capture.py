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


"""Capture of row deltas into the outbox, on SQLite, PostgreSQL, MariaDB.

Every test installs the middleware on a sessionmaker (or an oslo.db
enginefacade context manager) with the relay and the snapshot server off,
writes through sessions and asserts on the ``oslo_publish_outbox`` rows.
"""

import datetime
import decimal
import enum
import json
import threading
import uuid

from oslo_db.sqlalchemy import enginefacade
from oslo_db.sqlalchemy import orm as db_orm
from oslo_db.sqlalchemy import update_match
import sqlalchemy as sa
from sqlalchemy import orm

import oslo_publish
from oslo_publish import exceptions
from oslo_publish import outbox
from oslo_publish import wire
from tests import base

Base = orm.declarative_base()


class Color(enum.Enum):
    red = 1
    green = 2


class Item(Base):
    __tablename__ = 'items'
    id = sa.Column(sa.Integer, primary_key=True, autoincrement=True)
    name = sa.Column(sa.String(64))
    secret = sa.Column(sa.String(64))
    status = sa.Column(sa.String(16), server_default='new')
    counter = sa.Column(sa.Integer, default=0)
    revision = sa.Column(sa.Integer, default=1,
                         onupdate=sa.text('revision + 1'))
    deleted = sa.Column(sa.Integer, default=0)
    deleted_at = sa.Column(sa.DateTime)
    updated_at = sa.Column(sa.DateTime)
    children = orm.relationship('Child', cascade='all, delete-orphan',
                                back_populates='item')


class Child(Base):
    __tablename__ = 'children'
    id = sa.Column(sa.Integer, primary_key=True, autoincrement=False)
    item_id = sa.Column(sa.Integer, sa.ForeignKey('items.id'))
    label = sa.Column(sa.String(16))
    item = orm.relationship(Item, back_populates='children')


class Pair(Base):
    __tablename__ = 'pairs'
    region = sa.Column(sa.String(32), primary_key=True)
    num = sa.Column(sa.Integer, primary_key=True, autoincrement=False)
    value = sa.Column(sa.String(64))


class Typed(Base):
    __tablename__ = 'typed'
    id = sa.Column(sa.Integer, primary_key=True, autoincrement=False)
    dt = sa.Column(sa.DateTime().with_variant(
        sa.dialects.mysql.DATETIME(fsp=6), 'mysql', 'mariadb'))
    dt_tz = sa.Column(sa.DateTime(timezone=True))
    d = sa.Column(sa.Date)
    t = sa.Column(sa.Time)
    td = sa.Column(sa.Interval)
    dec = sa.Column(sa.Numeric(20, 6))
    b = sa.Column(sa.LargeBinary)
    u = sa.Column(sa.Uuid)
    j = sa.Column(sa.JSON)
    e = sa.Column(sa.Enum(Color))
    flag = sa.Column(sa.Boolean)
    f = sa.Column(sa.Float(53))
    big = sa.Column(sa.BigInteger)
    s = sa.Column(sa.Unicode(64))
    nul = sa.Column(sa.String(8))


class Odd(Base):
    __tablename__ = 'odd'
    id = sa.Column(sa.Integer, primary_key=True, autoincrement=False)
    obj = sa.Column(sa.PickleType)


class Renamed(Base):
    __tablename__ = 'renamed'
    ident = sa.Column('rid', sa.Integer, primary_key=True,
                      autoincrement=False)
    label = sa.Column('lbl', sa.String(16))


class Note(Base):
    __tablename__ = 'notes'
    id = sa.Column(sa.Integer, primary_key=True)
    text = sa.Column(sa.String(64))


PUBLISHED = ['items', 'pairs', 'typed', 'odd', 'children', 'renamed']


class _Base(object):

    def setUp(self):
        super().setUp()
        Base.metadata.create_all(self.engine)
        outbox.metadata.create_all(self.engine)
        self.override(tables=PUBLISHED, exclude_columns=['items.secret'],
                      relay_in_process=False, snapshot_server=False,
                      stream='capture')
        self.maker = orm.sessionmaker(bind=self.engine)

    def override(self, **kw):
        for name, value in kw.items():
            self.conf.set_override(name, value, 'oslo_publish')

    def install(self, target=None, **kw):
        handle = oslo_publish.install(self.conf, target or self.maker,
                                      Base.metadata, **kw)
        self.addCleanup(handle.stop)
        return handle

    def entries(self):
        """Outbox rows in id order as (id, payload dict)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(outbox.outbox.c.id,
                                          outbox.outbox.c.payload)
                                .order_by(outbox.outbox.c.id)).all()
        return [(r.id, json.loads(r.payload)) for r in rows]

    def changes(self):
        """Every captured change, decoded, in outbox order."""
        out = []
        for _id, payload in self.entries():
            for change in payload['changes']:
                out.append(wire.decode_change(change))
        return out

    def one_tx(self):
        """The changes of the single outbox entry (asserts there is one)."""
        entries = self.entries()
        self.assertEqual(1, len(entries), entries)
        return [wire.decode_change(c) for c in entries[0][1]['changes']]

    def db_row(self, model, *key):
        with self.maker() as s:
            obj = s.get(model, key if len(key) > 1 else key[0])
            if obj is None:
                return None
            table = model.__table__
            return {c.name: getattr(obj, c.key) for c in table.columns
                    if c.name != 'secret'}

    def clear(self):
        """Delete every outbox entry (what was captured so far)."""
        with self.engine.begin() as conn:
            conn.execute(outbox.outbox.delete())

    def add_items(self, *names):
        with self.maker() as s:
            objs = [Item(name=n, secret='pw-' + n) for n in names]
            s.add_all(objs)
            s.commit()
            ids = [o.id for o in objs]
        self.clear()
        return ids


class _CaptureTests(_Base):

    def setUp(self):
        super().setUp()
        self.handle = self.install()

    def test_insert_publishes_the_committed_after_image(self):
        """An ORM insert publishes the row as committed, defaults included."""
        with self.maker() as s:
            s.add(Item(name='a', secret='pw'))
            s.commit()
        (change,) = self.one_tx()
        self.assertEqual(('items', 'insert'), (change.table, change.op))
        row = self.db_row(Item, change.key[0])
        self.assertEqual(row, change.after)
        self.assertEqual('new', change.after['status'])
        self.assertEqual(0, change.after['counter'])
        self.assertIsNone(change.before)

    def test_entry_carries_tables_header_and_stream(self):
        """Each entry names its stream and every table's pk and version."""
        self.add_items()
        with self.maker() as s:
            s.add(Item(name='a'))
            s.add(Pair(region='r', num=1, value='v'))
            s.commit()
        ((_id, payload),) = self.entries()
        self.assertEqual({'items': self.handle.tables['items'].header(),
                          'pairs': self.handle.tables['pairs'].header()},
                         payload['tables'])
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(outbox.outbox)).one()
        self.assertEqual('capture', row.stream)
        self.assertEqual(32, len(row.txid))
        self.assertIsNone(row.seq)

    def test_update_publishes_changed_columns_and_full_after_image(self):
        """An ORM update carries before values, changed list, after-image."""
        (item_id,) = self.add_items('a')
        with self.maker() as s:
            s.get(Item, item_id).name = 'b'
            s.commit()
        (change,) = self.one_tx()
        self.assertEqual('update', change.op)
        self.assertEqual(('name', 'revision'), change.changed)
        self.assertEqual({'name': 'a', 'revision': 1}, change.before)
        self.assertEqual(self.db_row(Item, item_id), change.after)
        self.assertEqual(2, change.after['revision'])

    def test_update_of_unloaded_object_reads_original_values(self):
        """An update of an expired object still has correct before values."""
        (item_id,) = self.add_items('a')
        with self.maker() as s:
            obj = s.get(Item, item_id)
            s.expire(obj)
            obj.name = 'b'
            s.commit()
        (change,) = self.one_tx()
        self.assertEqual({'name': 'a', 'revision': 1}, change.before)
        self.assertEqual('b', change.after['name'])

    def test_delete_publishes_full_before_image(self):
        """An ORM delete carries the full before-image of the row."""
        (item_id,) = self.add_items('a')
        row = self.db_row(Item, item_id)
        with self.maker() as s:
            s.delete(s.get(Item, item_id))
            s.commit()
        (change,) = self.one_tx()
        self.assertEqual(('delete', (item_id,)), (change.op, change.key))
        self.assertEqual(row, change.before)
        self.assertIsNone(change.after)

    def test_delete_of_expired_object_loads_before_image(self):
        """A delete of an expired object still publishes every column."""
        (item_id,) = self.add_items('a')
        row = self.db_row(Item, item_id)
        with self.maker() as s:
            obj = s.get(Item, item_id)
            s.expire(obj)
            s.delete(obj)
            s.commit()
        (change,) = self.one_tx()
        self.assertEqual(row, change.before)

    def test_cascade_delete_publishes_children_before_images(self):
        """An ORM cascade deletes children with their full images."""
        with self.maker() as s:
            s.add(Item(id=1, name='p', children=[
                Child(id=1, label='a'), Child(id=2, label='b')]))
            s.commit()
        self.clear()
        with self.maker() as s:
            s.delete(s.get(Item, 1))
            s.commit()
        got = {(c.table, c.op, c.key): c for c in self.one_tx()}
        self.assertEqual({('items', 'delete', (1,)),
                          ('children', 'delete', (1,)),
                          ('children', 'delete', (2,))}, set(got))
        self.assertEqual({'id': 2, 'item_id': 1, 'label': 'b'},
                         got[('children', 'delete', (2,))].before)

    def test_orphan_delete_and_foreign_key_sync(self):
        """Delete-orphan and relationship FK changes are captured."""
        with self.maker() as s:
            s.add(Item(id=1, name='p', children=[
                Child(id=1, label='a'), Child(id=2, label='b')]))
            s.add(Item(id=2, name='q'))
            s.commit()
        self.clear()
        with self.maker() as s:
            first, second = s.get(Item, 1), s.get(Item, 2)
            orphan, moved = sorted(first.children, key=lambda c: c.id)
            first.children.remove(orphan)
            moved.item = second
            s.commit()
        got = {(c.op, c.key): c for c in self.one_tx()}
        self.assertEqual({('delete', (1,)), ('update', (2,))}, set(got))
        self.assertEqual('a', got[('delete', (1,))].before['label'])
        update = got[('update', (2,))]
        self.assertEqual((('item_id',), {'item_id': 1}, 2),
                         (update.changed, update.before,
                          update.after['item_id']))

    def test_change_made_by_a_later_before_commit_hook_is_captured(self):
        """A flush after the capture's before_commit still publishes."""
        def hook(session):
            if not session.info.get('hooked'):
                session.info['hooked'] = True
                session.add(Note(text='audit'))
                session.add(Pair(region='late', num=1, value='v'))
        sa.event.listen(self.maker, 'before_commit', hook)
        self.addCleanup(sa.event.remove, self.maker, 'before_commit', hook)
        with self.maker() as s:
            s.add(Item(id=1, name='trigger'))
            s.add(Pair(region='late', num=2, value='w'))
            s.commit()
        keys = {(c.table, c.key) for c in self.changes()}
        self.assertEqual({('items', (1,)), ('pairs', ('late', 1)),
                          ('pairs', ('late', 2))}, keys)

    def _statements_of(self, work):
        statements = []

        def record(conn, cursor, statement, *args):
            statements.append(' '.join(statement.split()[:3]).upper())
            if statement.upper().startswith('UPDATE') and \
                    ' RETURNING ' in statement.upper():
                statements.append('UPDATE RETURNING')
        sa.event.listen(self.engine, 'before_cursor_execute', record)
        try:
            work()
        finally:
            sa.event.remove(self.engine, 'before_cursor_execute', record)
        return statements

    def test_plain_orm_transaction_adds_one_statement(self):
        """A plain ORM flush costs only the outbox INSERT, no query."""
        with self.maker() as s:
            s.add(Pair(region='r', num=1, value='a'))
            s.commit()
        self.clear()

        def work():
            with self.maker() as s:
                s.add(Pair(region='r', num=2, value='b'))
                s.commit()
        statements = self._statements_of(work)
        self.assertEqual(1, len([x for x in statements
                                 if x.startswith('INSERT INTO PAIRS')]))
        self.assertEqual(['INSERT INTO OSLO_PUBLISH_OUTBOX'],
                         [x for x in statements if 'OUTBOX' in x])
        self.assertEqual([], [x for x in statements if 'SELECT' in x])

    def test_outbox_insert_returns_nothing(self):
        """The entry's INSERT fetches no generated id (nobody reads it)."""
        seen = []

        def record(conn, cursor, statement, *args):
            if 'oslo_publish_outbox' in statement and \
                    statement.lstrip().upper().startswith('INSERT'):
                seen.append(statement.upper())
        sa.event.listen(self.engine, 'before_cursor_execute', record)
        self.addCleanup(sa.event.remove, self.engine,
                        'before_cursor_execute', record)
        with self.maker() as s:
            s.add(Pair(region='r', num=1, value='a'))
            s.commit()
        self.assertEqual(1, len(seen))
        self.assertNotIn('RETURNING', seen[0])
        self.assertEqual(1, len(self.entries()))

    def test_update_after_image_is_read_back_unless_turned_off(self):
        """ORM updates re-read the row (RETURNING on PostgreSQL) or not."""
        with self.maker() as s:
            s.add(Pair(region='r', num=1, value='a'))
            s.commit()
        self.clear()

        def work(value):
            def run():
                with self.maker() as s:
                    s.get(Pair, ('r', 1)).value = value
                    s.commit()
            return run
        on = self._statements_of(work('b'))
        self.handle.stop()
        self.override(reread_updated_rows=False)
        self.handle = self.install()
        off = self._statements_of(work('c'))
        # PostgreSQL: the UPDATE's own RETURNING is the after-image.
        reads = 1 if self.BACKEND == 'postgresql' else 2
        self.assertEqual(reads,
                         len([x for x in on if x.startswith('SELECT')]))
        self.assertEqual(1, len([x for x in off if x.startswith('SELECT')]))
        self.assertEqual(self.BACKEND == 'postgresql',
                         'UPDATE RETURNING' in on)
        self.assertNotIn('UPDATE RETURNING', off)
        first, second = self.changes()
        self.assertEqual((('value',), {'value': 'a'}, 'b'),
                         (first.changed, first.before, first.after['value']))
        self.assertEqual((('value',), {'value': 'b'}, 'c'),
                         (second.changed, second.before,
                          second.after['value']))

    def test_after_image_has_concurrent_changes_at_every_flush(self):
        """Flush after flush, a column another tx changed is published."""
        with self.maker() as s:
            s.add(Item(id=1, name='a'))
            s.commit()
        self.clear()
        steps = [('name', 'b', 10), ('deleted', 1, 11), ('name', 'c', 12),
                 ('name', 'd', 13)]

        def run():
            for attr, value, counter in steps:
                with self.maker() as s:
                    obj = s.get(Item, 1)
                    # Committed by another transaction after the load,
                    # in a column this session does not write.
                    with self.engine.begin() as conn:
                        conn.execute(Item.__table__.update().values(
                            counter=counter))
                    setattr(obj, attr, value)
                    s.commit()
        statements = self._statements_of(run)
        afters = [c.after for c in self.changes()]
        self.assertEqual([('b', 0, 10), ('b', 1, 11), ('c', 1, 12),
                          ('d', 1, 13)],
                         [(a['name'], a['deleted'], a['counter'])
                          for a in afters])
        if self.BACKEND == 'postgresql':
            # Every flush UPDATE (the same ORM statement object, reused
            # with its RETURNING) returns its after-image: the only
            # SELECTs are the loads.
            self.assertEqual(len(steps), statements.count('UPDATE RETURNING'))
            self.assertEqual(len(steps), len(
                [x for x in statements if x.startswith('SELECT')]))

    def test_returning_slots_close_after_failed_and_good_flushes(self):
        """A flush that fails leaves no slot open; the next one returns."""
        with self.maker() as s:
            s.add_all([Item(id=1, name='a'), Item(id=2, name='b')])
            s.commit()
        self.clear()
        # Session capture only (log-based capture has no listeners).
        slots = getattr(self.handle.capture, '_open_slots', set())

        def failing():
            with self.maker() as s:
                s.get(Item, 1).name = 'x'
                s.add(Item(id=2, name='duplicate'))
                self.assertRaises(sa.exc.IntegrityError, s.commit)
        failed = self._statements_of(failing)
        self.assertEqual(set(), slots)
        self.assertEqual([], self.entries())

        def good():
            with self.maker() as s:
                s.get(Item, 1).name = 'y'
                s.commit()
        statements = self._statements_of(good)
        self.assertEqual(set(), slots)
        if self.BACKEND == 'postgresql' and self.handle.capture:
            self.assertIn('UPDATE RETURNING', failed + statements)
            self.assertEqual(1, statements.count('UPDATE RETURNING'))
        (change,) = self.changes()
        self.assertEqual(('y', 'a'), (change.after['name'],
                                      change.before['name']))
        self.assertIn('name', change.changed)

    def test_excluded_column_never_appears(self):
        """An excluded column is in no after-image nor before-image."""
        (item_id,) = self.add_items('a')
        with self.maker() as s:
            s.add(Item(name='x', secret='s1'))
            obj = s.get(Item, item_id)
            obj.secret = 'changed'
            obj.name = 'b'
            s.commit()
        with self.maker() as s:
            s.delete(s.get(Item, item_id))
            s.commit()
        with self.maker() as s:
            s.query(Item).update({'secret': 'bulk', 'name': 'c'},
                                 synchronize_session=False)
            s.commit()
        changes = self.changes()
        self.assertEqual(['insert', 'update', 'delete', 'update'],
                         [c.op for c in changes])
        for _id, payload in self.entries():
            self.assertNotIn('secret', json.dumps(payload))
        self.assertNotIn('secret', self.handle.tables['items'].columns)

    def test_bulk_query_update_and_delete(self):
        """Query.update/delete publish every affected row."""
        ids = self.add_items('a', 'b', 'c')
        with self.maker() as s:
            n = s.query(Item).filter(Item.id.in_(ids[:2])).update(
                {'name': Item.name + '2'}, synchronize_session='evaluate')
            self.assertEqual(2, n)
            s.query(Item).filter(Item.id == ids[2]).delete(
                synchronize_session='fetch')
            s.commit()
        changes = {(c.op, c.key[0]): c for c in self.one_tx()}
        self.assertEqual({('update', ids[0]), ('update', ids[1]),
                          ('delete', ids[2])}, set(changes))
        upd = changes[('update', ids[0])]
        self.assertEqual(('name', 'revision'), upd.changed)
        self.assertEqual('a', upd.before['name'])
        self.assertEqual(self.db_row(Item, ids[0]), upd.after)
        self.assertEqual('c', changes[('delete', ids[2])].before['name'])

    def test_orm_update_statement_through_session(self):
        """session.execute(update(Model)) publishes the affected rows."""
        ids = self.add_items('a', 'b')
        with self.maker() as s:
            s.execute(sa.update(Item).where(Item.name == 'b')
                      .values(counter=Item.counter + 5))
            s.commit()
        (change,) = self.one_tx()
        self.assertEqual((ids[1],), change.key)
        self.assertEqual(5, change.after['counter'])
        self.assertEqual(self.db_row(Item, ids[1]), change.after)

    def test_orm_bulk_update_by_primary_key(self):
        """An ORM bulk UPDATE by primary key publishes each row."""
        ids = self.add_items('a', 'b')
        with self.maker() as s:
            s.execute(sa.update(Item), [{'id': ids[0], 'name': 'x'},
                                        {'id': ids[1], 'name': 'y'}])
            s.commit()
        got = sorted((c.key[0], c.after['name']) for c in self.one_tx())
        self.assertEqual([(ids[0], 'x'), (ids[1], 'y')], got)

    def test_core_statements_through_session(self):
        """Core insert/update/delete executed by the session are captured."""
        table = Item.__table__
        with self.maker() as s:
            s.execute(table.insert().values(id=10, name='ten'))
            s.execute(table.insert(), [{'id': 11, 'name': 'eleven'},
                                       {'id': 12, 'name': 'twelve'}])
            s.execute(table.update().where(table.c.id == 11)
                      .values(name='ELEVEN'))
            s.execute(table.delete().where(table.c.id == 12))
            s.commit()
        changes = {c.key[0]: c for c in self.one_tx()}
        self.assertEqual({10, 11}, set(changes))
        self.assertEqual('insert', changes[11].op)
        self.assertEqual(self.db_row(Item, 11), changes[11].after)
        self.assertEqual('new', changes[10].after['status'])
        self.clear()
        with self.maker() as s:
            s.execute(table.update().where(table.c.id == 10)
                      .values(name='TEN'))
            s.execute(table.delete().where(table.c.id == 11))
            s.commit()
        changes = {c.key[0]: c for c in self.one_tx()}
        self.assertEqual('update', changes[10].op)
        self.assertEqual({'name': 'ten', 'revision': 1}, changes[10].before)
        self.assertEqual('delete', changes[11].op)
        self.assertEqual('ELEVEN', changes[11].before['name'])

    def test_core_insert_with_generated_key(self):
        """A Core insert without a key value publishes the generated key."""
        with self.maker() as s:
            result = s.execute(Item.__table__.insert().values(name='gen'))
            new_id = result.inserted_primary_key[0]
            s.commit()
        (change,) = self.one_tx()
        self.assertEqual((new_id,), change.key)

    def test_insert_statements_without_keys_publish_generated_keys(self):
        """Inserts without key values publish every generated key."""
        table = Item.__table__
        with self.maker() as s:
            s.execute(sa.insert(Item).values(name='a'))
            ids = s.scalars(sa.insert(Item).returning(Item.id),
                            [{'name': 'b'}, {'name': 'c'}]).all()
            s.execute(sa.insert(Item), [{'name': 'd'}, {'name': 'e'}])
            row = s.execute(table.insert().values(name='f')
                            .returning(table.c.id, table.c.name)).one()
            s.execute(table.insert(), [{'name': 'g'}, {'name': 'h'}])
            s.commit()
        self.assertEqual(2, len(ids))
        self.assertEqual('f', row.name)
        changes = self.one_tx()
        self.assertEqual(8, len({c.key for c in changes}))
        by_name = {c.after['name']: c.key[0] for c in changes}
        self.assertEqual(ids, [by_name['b'], by_name['c']])
        self.assertEqual(row.id, by_name['f'])
        for change in changes:
            self.assertEqual(self.db_row(Item, change.key[0]), change.after)

    def test_several_flushes_make_one_entry(self):
        """Several flushes in one transaction write one outbox entry."""
        with self.maker() as s:
            for n in range(4):
                s.add(Item(name='n%d' % n))
                s.flush()
            s.commit()
        self.assertEqual(4, len(self.one_tx()))

    def test_insert_then_update_is_one_insert(self):
        """Insert then update in one transaction publish the final insert."""
        with self.maker() as s:
            obj = Item(name='a')
            s.add(obj)
            s.flush()
            obj.name = 'b'
            s.flush()
            s.execute(sa.update(Item).where(Item.id == obj.id)
                      .values(counter=3))
            s.commit()
            item_id = obj.id
        (change,) = self.one_tx()
        self.assertEqual('insert', change.op)
        self.assertEqual(self.db_row(Item, item_id), change.after)
        self.assertEqual(('b', 3), (change.after['name'],
                                    change.after['counter']))

    def test_insert_then_delete_publishes_nothing(self):
        """A row inserted and deleted in one transaction writes no entry."""
        with self.maker() as s:
            obj = Item(name='a')
            s.add(obj)
            s.flush()
            s.delete(obj)
            s.commit()
        self.assertEqual([], self.entries())

    def test_update_then_delete_keeps_original_before_image(self):
        """Update then delete publish a delete with the original image."""
        (item_id,) = self.add_items('a')
        row = self.db_row(Item, item_id)
        with self.maker() as s:
            obj = s.get(Item, item_id)
            obj.name = 'b'
            s.flush()
            s.delete(obj)
            s.commit()
        (change,) = self.one_tx()
        self.assertEqual('delete', change.op)
        self.assertEqual(row, change.before)

    def test_rollback_publishes_nothing(self):
        """A rolled-back transaction writes no outbox entry."""
        (item_id,) = self.add_items('a')
        with self.maker() as s:
            s.add(Item(name='x'))
            s.get(Item, item_id).name = 'y'
            s.flush()
            s.rollback()
        with self.maker() as s:
            s.add(Item(name='z'))
            s.flush()
        self.assertEqual([], self.entries())

    def test_rolled_back_savepoint_drops_exactly_its_deltas(self):
        """A rolled-back savepoint drops its own deltas and nothing else."""
        (item_id,) = self.add_items('a')
        with self.maker() as s:
            s.add(Item(id=100, name='outer'))
            s.flush()
            sp = s.begin_nested()
            s.add(Item(id=101, name='inner'))
            s.get(Item, item_id).name = 'inner-update'
            s.flush()
            sp.rollback()
            s.add(Item(id=102, name='after'))
            s.commit()
        self.assertEqual({(100,), (102,)}, {c.key for c in self.one_tx()})
        self.assertEqual('a', self.db_row(Item, item_id)['name'])

    def test_rolled_back_savepoint_drops_its_statement_deltas(self):
        """Bulk and Core statements in a rolled-back savepoint vanish."""
        ids = self.add_items('a', 'b')
        with self.maker() as s:
            s.execute(sa.update(Item).where(Item.id == ids[0])
                      .values(name='kept'))
            sp = s.begin_nested()
            s.execute(sa.update(Item).values(name='lost'))
            s.execute(Item.__table__.delete().where(Item.id == ids[1]))
            s.execute(Item.__table__.insert().values(id=99, name='lost'))
            sp.rollback()
            s.commit()
        (change,) = self.one_tx()
        self.assertEqual(((ids[0],), 'kept', {'name': 'a', 'revision': 1}),
                         (change.key, change.after['name'], change.before))

    def test_core_executemany_update_with_bound_keys(self):
        """A Core executemany UPDATE publishes each parameter set's row."""
        ids = self.add_items('a', 'b', 'c')
        table = Item.__table__
        stmt = table.update().where(table.c.id == sa.bindparam('b_id')) \
            .values(name=sa.bindparam('b_name'))
        with self.maker() as s:
            s.execute(stmt, [{'b_id': ids[0], 'b_name': 'x'},
                             {'b_id': ids[2], 'b_name': 'z'}])
            s.commit()
        got = sorted((c.key[0], c.op, c.after['name'])
                     for c in self.one_tx())
        self.assertEqual([(ids[0], 'update', 'x'), (ids[2], 'update', 'z')],
                         got)

    def test_released_savepoint_keeps_its_deltas(self):
        """A released savepoint's deltas are published with the tx."""
        with self.maker() as s:
            with s.begin_nested():
                s.add(Item(id=100, name='a'))
            with s.begin_nested():
                s.add(Item(id=101, name='b'))
                inner = s.begin_nested()
                s.add(Item(id=102, name='c'))
                s.flush()
                inner.rollback()
            s.commit()
        self.assertEqual({(100,), (101,)}, {c.key for c in self.one_tx()})

    def test_failed_flush_in_savepoint_drops_its_deltas(self):
        """A savepoint rolled back after an IntegrityError drops its work."""
        with self.maker() as s:
            s.add(Item(id=1, name='a'))
            s.flush()
            try:
                with s.begin_nested():
                    s.execute(Item.__table__.insert().values(id=2,
                                                             name='b'))
                    s.add(Item(id=1, name='dup'))
                    s.flush()
            except sa.exc.IntegrityError:
                pass
            s.commit()
        self.assertEqual([(1,)], [c.key for c in self.one_tx()])

    def test_primary_key_change_is_delete_and_insert(self):
        """Changing a primary key publishes delete(old) + insert(new)."""
        (item_id,) = self.add_items('a')
        with self.maker() as s:
            s.get(Item, item_id).id = 500
            s.commit()
        changes = self.one_tx()
        self.assertEqual([('delete', (item_id,)), ('insert', (500,))],
                         [(c.op, c.key) for c in changes])
        self.assertEqual('a', changes[0].before['name'])
        self.assertEqual(self.db_row(Item, 500), changes[1].after)

    def test_composite_primary_key(self):
        """Composite keys come in primary-key order, also for updates."""
        with self.maker() as s:
            s.add(Pair(region='eu', num=1, value='x'))
            s.commit()
        with self.maker() as s:
            s.get(Pair, ('eu', 1)).value = 'y'
            s.commit()
        with self.maker() as s:
            s.query(Pair).filter(Pair.region == 'eu').delete()
            s.commit()
        changes = self.changes()
        self.assertEqual(['insert', 'update', 'delete'],
                         [c.op for c in changes])
        self.assertEqual({('eu', 1)}, {c.key for c in changes})
        self.assertEqual(['region', 'num'],
                         self.handle.tables['pairs'].header()['pk'])

    def test_unpublished_table_and_read_only_tx_write_nothing(self):
        """Changes to other tables and reads write no outbox entry."""
        self.add_items('a')
        with self.maker() as s:
            s.add(Note(text='n'))
            s.query(Item).all()
            s.execute(sa.update(Note).values(text='m'))
            s.commit()
        self.assertEqual([], self.entries())

    def test_other_sessionmaker_is_not_captured(self):
        """Sessions of another sessionmaker on the same DB are not seen."""
        other = orm.sessionmaker(bind=self.engine)
        with other() as s:
            s.add(Item(name='other'))
            s.execute(sa.update(Item).values(counter=9))
            s.commit()
        self.assertEqual([], self.entries())

    def test_second_install_on_one_target_is_refused(self):
        """Installing twice on one target fails; after stop() it works."""
        self.assertRaises(exceptions.UnsupportedTarget, self.install)
        self.handle.stop()
        self.install()
        with self.maker() as s:
            s.add(Item(name='once'))
            s.commit()
        self.assertEqual(1, len(self.entries()))

    def test_stop_removes_the_listeners(self):
        """After Handle.stop() nothing is captured any more."""
        self.handle.stop()
        with self.maker() as s:
            s.add(Item(name='late'))
            s.commit()
        self.assertEqual([], self.entries())

    def test_unencodable_value_commits_and_invalidates_the_table(self):
        """A value the wire cannot encode commits; its table is invalidated."""
        with self.maker() as s:
            s.add(Odd(id=1, obj={1, 2}))
            s.add(Item(id=5, name='kept'))
            s.commit()
        self.assertIsNotNone(self.db_row(Odd, 1))
        changes = self.one_tx()
        self.assertEqual(
            [('items', 'insert', None), ('odd', 'invalidate', 'unencodable')],
            [(c.table, c.op, c.cause) for c in changes])
        self.assertEqual(1, self.handle.metrics.value(
            'oslo_publish_capture_invalidations_total', stream='capture',
            table='odd', cause='unencodable'))

    def test_every_value_type_round_trips(self):
        """Every wire value type survives column -> outbox -> decode."""
        aware = self.BACKEND == 'postgresql'
        values = dict(
            id=1, dt=datetime.datetime(2026, 1, 2, 3, 4, 5, 678901),
            dt_tz=(datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=(
                datetime.timezone(datetime.timedelta(hours=2))))
                if aware else None),
            d=datetime.date(2026, 2, 28), t=datetime.time(13, 14, 15),
            td=datetime.timedelta(days=2, seconds=7),
            dec=decimal.Decimal('12345.678901'), b=b'\x00\xffbin',
            u=uuid.UUID('12345678-1234-5678-1234-567812345678'),
            j={'a': [1, 2, {'b': None}], 'c': 'd'}, e=Color.green,
            flag=True, f=0.25, big=2 ** 62, s='h\u00e9llo \u2603',
            nul=None)
        with self.maker() as s:
            s.add(Typed(**values))
            s.commit()
        with self.maker() as s:
            s.add(Typed(id=2, flag=False))
            s.commit()
        first, second = self.changes()
        db = self.db_row(Typed, 1)
        expected = dict(values, e='green')
        db['e'] = db['e'].name
        if aware:
            self.assertEqual(db['dt_tz'], first.after['dt_tz'])
            self.assertIsNotNone(first.after['dt_tz'].tzinfo)
        self.assertEqual(expected, db)
        self.assertEqual(expected, first.after)
        for name, value in first.after.items():
            self.assertIs(type(expected[name]), type(value), name)
        self.assertIs(False, second.after['flag'])
        self.assertIsNone(second.after['dec'])

    def test_disabled_installs_nothing(self):
        """enabled = false registers no listener and returns a handle."""
        self.handle.stop()
        self.override(enabled=False, tables=['no_such_table'])
        handle = self.install()
        self.assertFalse(handle.enabled)
        self.assertIsNone(handle.relay)
        with self.maker() as s:
            s.add(Item(name='x'))
            s.commit()
        self.assertEqual([], self.entries())
        handle.stop()

    def test_bad_table_name_fails_install(self):
        """A table that does not exist fails install with its name."""
        self.override(tables=['items', 'no_such_table'])
        err = self.assertRaises(exceptions.ConfigError, self.install)
        self.assertEqual('tables', err.option)
        self.assertIn('no_such_table', str(err))

    def test_bad_excluded_column_fails_install(self):
        """An excluded column that does not exist fails with its value."""
        self.override(exclude_columns=['items.nope'])
        err = self.assertRaises(exceptions.ConfigError, self.install)
        self.assertEqual('exclude_columns', err.option)
        self.assertIn('items.nope', str(err))

    def test_table_reflected_when_not_in_metadata(self):
        """A table missing from the metadata is reflected from the DB."""
        self.handle.stop()
        handle = oslo_publish.install(self.conf, self.maker)
        self.addCleanup(handle.stop)
        self.assertEqual(set(PUBLISHED), set(handle.tables))
        with self.maker() as s:
            s.add(Item(name='r'))
            s.commit()
        self.assertEqual('r', self.one_tx()[0].after['name'])

    def test_missing_outbox_table_fails_install(self):
        """Outbox delivery without its tables fails with NotInstalled."""
        self.handle.stop()
        outbox.metadata.drop_all(self.engine)
        self.assertRaises(exceptions.NotInstalled, self.install)

    def test_attributes_named_unlike_their_columns(self):
        """Deltas use column names even where attributes differ."""
        for metadata in (Base.metadata, None):
            self.handle.stop()
            self.handle = oslo_publish.install(self.conf, self.maker,
                                               metadata)
            with self.engine.begin() as conn:
                conn.execute(Renamed.__table__.delete())
            self.clear()
            with self.maker() as s:
                s.add(Renamed(ident=1, label='a'))
                s.flush()
                s.get(Renamed, 1).label = 'b'
                s.flush()
                s.execute(sa.update(Renamed), [{'ident': 1, 'label': 'c'}])
                s.execute(sa.insert(Renamed), [{'ident': 2, 'label': 'd'}])
                s.commit()
            got = sorted((c.op, c.key, c.after) for c in self.one_tx())
            self.assertEqual([('insert', (1,), {'rid': 1, 'lbl': 'c'}),
                              ('insert', (2,), {'rid': 2, 'lbl': 'd'})],
                             got)
        self.handle.stop()

    def test_metrics_count_transactions_and_deltas(self):
        """Captured transactions and deltas are counted by stream."""
        self.add_items('a', 'b')
        m = self.handle.metrics
        self.assertEqual(1, m.value('oslo_publish_transactions_captured'
                                    '_total', stream='capture'))
        self.assertEqual(2, m.value('oslo_publish_deltas_captured_total',
                                    stream='capture'))


class _EnginefacadeTests(_Base):
    """The target is a real oslo.db enginefacade transaction context."""

    def setUp(self):
        super().setUp()
        self.ctx = enginefacade.transaction_context()
        self.ctx.configure(connection=self.db.url)
        self.addCleanup(self.ctx.dispose_pool)
        self.handle = self.install(self.ctx)

    def test_enginefacade_writer_sessions_are_captured(self):
        """Writes through the enginefacade writer are captured."""
        context = type('Ctx', (object,), {})()
        with self.ctx.writer.using(context) as s:
            s.add(Item(name='ef'))
        (change,) = self.one_tx()
        self.assertEqual('ef', change.after['name'])

    def test_soft_delete_and_update_on_match(self):
        """oslo.db's soft_delete and update_on_match are captured."""
        context = type('Ctx', (object,), {})()
        with self.ctx.writer.using(context) as s:
            a, b = Item(name='a'), Item(name='b')
            s.add_all([a, b])
        self.clear()
        with self.ctx.writer.using(context) as s:
            self.assertIsInstance(s, db_orm.Session)
            s.query(Item).filter(Item.id == a.id).soft_delete()
        with self.ctx.writer.using(context) as s:
            specimen = Item(id=b.id, name='b')
            s.query(Item).update_on_match(specimen, 'id',
                                          {'name': 'matched'})
        with self.ctx.writer.using(context) as s:
            self.assertRaises(
                update_match.NoRowsMatched,
                s.query(Item).update_on_match,
                Item(id=b.id, name='wrong'), 'id', {'name': 'x'})
        first, second = self.changes()
        self.assertEqual(('update', (a.id,)), (first.op, first.key))
        self.assertEqual(a.id, first.after['deleted'])
        self.assertIsNotNone(first.after['deleted_at'])
        self.assertEqual(('update', 'matched'),
                         (second.op, second.after['name']))
        self.assertEqual(2, len(self.entries()))

    def test_other_enginefacade_context_is_not_captured(self):
        """A second transaction context on the same DB is not captured."""
        other = enginefacade.transaction_context()
        other.configure(connection=self.db.url)
        self.addCleanup(other.dispose_pool)
        context = type('Ctx', (object,), {})()
        with other.writer.using(context) as s:
            s.add(Item(name='other'))
        self.assertEqual([], self.entries())


class _ConcurrencyTests(_Base):
    """Two writers of one row on a server database."""

    def setUp(self):
        super().setUp()
        self.handle = self.install()

    def _waiting(self):
        with self.engine.connect() as conn:
            if self.BACKEND == 'postgresql':
                return conn.execute(sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE "
                    "datname = current_database() AND "
                    "wait_event_type = 'Lock'")).scalar()
            return conn.execute(sa.text(
                "SELECT count(*) FROM information_schema.processlist "
                "WHERE db = DATABASE() AND info LIKE 'UPDATE items%'"
            )).scalar()

    def test_concurrent_updates_of_a_row_are_in_commit_order(self):
        """The second committer's entry follows and sees the first's row."""
        with self.maker() as s:
            s.add(Item(id=1, name='a'))
            s.commit()
        self.clear()
        first = self.maker()
        self.addCleanup(first.close)
        first.get(Item, 1).counter = 7
        first.flush()
        errors = []

        def second():
            try:
                with self.maker() as s:
                    s.get(Item, 1).name = 'b'
                    s.commit()
            except Exception as exc:  # noqa: reported by the test
                errors.append(exc)

        thread = threading.Thread(target=second)
        thread.start()
        base.wait_for(self._waiting, timeout=30,
                      message="the second writer never waited for the "
                      "lock: %r" % (errors,))
        first.commit()
        thread.join(30)
        self.assertEqual([], errors)
        entries = self.entries()
        self.assertEqual(2, len(entries))
        (c1,) = entries[0][1]['changes']
        (c2,) = entries[1][1]['changes']
        self.assertLess(entries[0][0], entries[1][0])
        self.assertEqual(['counter', 'revision'], c1['changed'])
        self.assertEqual(['name', 'revision'], c2['changed'])
        after = wire.decode_row(c2['after'])
        self.assertEqual(self.db_row(Item, 1), after)
        self.assertEqual((7, 'b', 3), (after['counter'], after['name'],
                                       after['revision']))


class _InstallDefaultsTests(_Base):
    """install() with default delivery: relay and snapshot server run."""

    def test_install_with_defaults_publishes_to_the_bus(self):
        """A committed change reaches RabbitMQ through the in-process relay."""
        import oslo_messaging

        from tests.functional import delivery
        tf = self.useFixture(base.TransportFixture(self.conf))
        delivery.durable_broker(self.conf)
        self.override(relay_in_process=True, snapshot_server=True,
                      topics=[tf.topic], heartbeat_interval=0.2,
                      relay_poll_interval=0.1)
        transport = oslo_messaging.get_notification_transport(self.conf)
        self.addCleanup(transport.cleanup)
        receiver = self.useFixture(delivery.Receiver(transport, tf))
        handle = self.install()
        self.assertIsNotNone(handle.relay)
        self.assertIsNotNone(handle.snapshot_server)
        with self.maker() as s:
            s.add(Item(id=1, name='bus'))
            s.commit()
        base.wait_for(receiver.transactions, timeout=30,
                      message='no delta reached the bus')
        (tx,) = receiver.transactions()
        (change,) = tx['changes']
        self.assertEqual(('items', 'insert', [1]),
                         (change['table'], change['op'], change['key']))
        self.assertEqual(1, tx['seq'])
        handle.stop()
        with self.maker() as s:
            s.add(Item(id=2, name='after-stop'))
            s.commit()
        # The delivered entry was deleted (outbox_retention = 0); the
        # change after stop() was not captured.
        self.assertEqual([], self.entries())


class TestCaptureSQLite(_CaptureTests, base.BackendTestCase):
    BACKEND = 'sqlite'


class TestCapturePostgreSQL(_CaptureTests, base.BackendTestCase):
    BACKEND = 'postgresql'


class TestCaptureMySQL(_CaptureTests, base.BackendTestCase):
    BACKEND = 'mysql'


class TestEnginefacadeSQLite(_EnginefacadeTests, base.BackendTestCase):
    BACKEND = 'sqlite'


class TestEnginefacadePostgreSQL(_EnginefacadeTests, base.BackendTestCase):
    BACKEND = 'postgresql'


class TestEnginefacadeMySQL(_EnginefacadeTests, base.BackendTestCase):
    BACKEND = 'mysql'


class TestConcurrencyPostgreSQL(_ConcurrencyTests, base.BackendTestCase):
    BACKEND = 'postgresql'


class TestConcurrencyMySQL(_ConcurrencyTests, base.BackendTestCase):
    BACKEND = 'mysql'


class TestInstallDefaultsSQLite(_InstallDefaultsTests, base.BackendTestCase):
    BACKEND = 'sqlite'


class TestInstallDefaultsPostgreSQL(_InstallDefaultsTests,
                                    base.BackendTestCase):
    BACKEND = 'postgresql'


class TestInstallDefaultsMySQL(_InstallDefaultsTests, base.BackendTestCase):
    BACKEND = 'mysql'
