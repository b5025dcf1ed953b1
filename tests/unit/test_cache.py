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

import operator
import threading

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import testtools

from consumer import cache
from oslo_publish import wire
from tests import base


def ins(table, key, **row):
    return wire.Change(table, wire.INSERT, (key,), row, None, ())


def upd(table, key, before=None, **row):
    return wire.Change(table, wire.UPDATE, (key,), row, before or {},
                       tuple(row))


def dele(table, key, **row):
    return wire.Change(table, wire.DELETE, (key,), None, row, ())


def _recompute(view, table, column):
    index = {}
    for key, row in view.rows(table).items():
        index.setdefault(row.get(column), set()).add(key)
    return index


def _index_of(view, table, column):
    values = {row.get(column) for row in view.rows(table).values()}
    return {value: set(view.index_keys(table, column, value))
            for value in values}


class TestView(base.TestCase):

    def setUp(self):
        super().setUp()
        self.cache = cache.Cache(indexes={'instances': ['host']})

    def test_empty_cache(self):
        """A new cache has no tables and empty, queryable indexes."""
        view = self.cache.view()
        self.assertEqual((), view.tables())
        self.assertEqual(0, view.count('instances'))
        self.assertIsNone(view.get('instances', (1,)))
        self.assertEqual((), view.by_index('instances', 'host', 'h1'))
        self.assertEqual({}, dict(view.rows('instances')))

    def test_view_is_constant_time_and_shared(self):
        """Taking a view copies nothing: two views between writes are one."""
        self.cache.replace_table(
            'instances', {(i,): {'id': i, 'host': 'h%d' % (i % 7)}
                          for i in range(20000)})
        first = self.cache.view()
        self.assertIs(first, self.cache.view())
        self.assertIs(first.rows('instances'),
                      self.cache.view().rows('instances'))

    def test_view_never_sees_a_later_batch(self):
        """A view taken before a batch keeps its content after the batch."""
        self.cache.apply([ins('instances', 1, id=1, host='a')])
        before = self.cache.view()
        self.cache.apply([upd('instances', 1, id=1, host='b'),
                          ins('instances', 2, id=2, host='b'),
                          dele('instances', 1)])
        self.assertEqual({'id': 1, 'host': 'a'},
                         dict(before.get('instances', (1,))))
        self.assertEqual(1, before.count('instances'))
        self.assertEqual(1, len(before.by_index('instances', 'host', 'a')))
        self.assertEqual((), before.by_index('instances', 'host', 'b'))
        after = self.cache.view()
        self.assertIsNone(after.get('instances', (1,)))
        self.assertEqual(1, len(after.by_index('instances', 'host', 'b')))

    def test_rows_are_read_only(self):
        """Rows and tables handed to readers cannot be modified."""
        self.cache.apply([ins('instances', 1, id=1, host='a')])
        view = self.cache.view()
        row = view.get('instances', (1,))

        def set_item(mapping, key, value):
            mapping[key] = value

        self.assertRaises(TypeError, set_item, row, 'host', 'x')
        self.assertRaises(TypeError, set_item, view.rows('instances'),
                          (2,), {})

    def test_caller_dict_is_copied(self):
        """Mutating the dict given to apply() does not change the cache."""
        after = {'id': 1, 'host': 'a'}
        self.cache.apply([wire.Change('instances', wire.INSERT, (1,),
                                      after, None, ())])
        after['host'] = 'z'
        self.assertEqual('a', self.cache.view().get('instances',
                                                    (1,))['host'])
        self.assertEqual(1, len(self.cache.view().by_index(
            'instances', 'host', 'a')))

    def test_undeclared_index_is_an_error(self):
        """by_index on a column that is not declared raises ValueError."""
        self.assertRaises(ValueError, self.cache.view().by_index,
                          'instances', 'flavor', 'x')
        self.assertRaises(ValueError, self.cache.view().by_index,
                          'hosts', 'name', 'x')

    def test_by_index_is_in_key_order(self):
        """by_index returns the matching rows in primary-key order."""
        self.cache.apply([ins('instances', k, id=k, host='a')
                          for k in (10, 2, 7)])
        rows = self.cache.view().by_index('instances', 'host', 'a')
        self.assertEqual([2, 7, 10], [r['id'] for r in rows])

    def test_unhashable_values_are_not_indexed(self):
        """A row whose indexed value is unhashable is stored, not indexed."""
        self.cache.apply([ins('instances', 1, id=1, host=['x'])])
        view = self.cache.view()
        self.assertEqual(['x'], view.get('instances', (1,))['host'])
        self.assertEqual((), view.by_index('instances', 'host', ['x']))


class TestApply(base.TestCase):

    def setUp(self):
        super().setUp()
        self.cache = cache.Cache(indexes={'instances': ['host', 'state']})

    def test_events_carry_before_and_after(self):
        """Add, update and delete events carry the right row images."""
        events = self.cache.apply([
            ins('instances', 1, id=1, host='a', state='on'),
            upd('instances', 1, id=1, host='b', state='on'),
            dele('instances', 1)])
        self.assertEqual([cache.ADD, cache.UPDATE, cache.DELETE],
                         [e.op for e in events])
        self.assertIsNone(events[0].before)
        self.assertEqual('a', events[0].after['host'])
        self.assertEqual('a', events[1].before['host'])
        self.assertEqual('b', events[1].after['host'])
        self.assertEqual('b', events[2].before['host'])
        self.assertIsNone(events[2].after)
        self.assertEqual((1,), events[2].key)

    def test_batch_is_atomic(self):
        """A batch that fails part-way leaves the cache untouched."""
        self.cache.apply([ins('instances', 1, id=1, host='a')])
        before = self.cache.view()
        bad = wire.Change('instances', 'truncate', (1,), None, None, ())
        self.assertRaises(ValueError, self.cache.apply,
                          [ins('instances', 2, id=2, host='a'), bad])
        self.assertIs(before, self.cache.view())
        self.assertIsNone(self.cache.view().get('instances', (2,)))

    def test_readers_see_all_or_nothing(self):
        """Concurrent readers only ever see whole batches."""
        stop = threading.Event()
        torn = []

        def reader():
            while not stop.is_set():
                view = self.cache.view()
                counts = {view.count('instances'), view.count('hosts')}
                if len(counts) != 1:
                    torn.append(counts)

        thread = threading.Thread(target=reader)
        thread.start()
        try:
            for i in range(300):
                self.cache.apply([ins('instances', i, id=i, host='a'),
                                  ins('hosts', i, id=i)])
        finally:
            stop.set()
            thread.join()
        self.assertEqual([], torn)

    def test_replayed_insert_is_an_upsert(self):
        """An insert of an existing key is an upsert; a replay is silent."""
        change = ins('instances', 1, id=1, host='a')
        self.assertEqual(1, len(self.cache.apply([change])))
        generation = self.cache.view().generation
        self.assertEqual([], self.cache.apply([change]))
        self.assertEqual(generation, self.cache.view().generation)
        events = self.cache.apply([ins('instances', 1, id=1, host='b')])
        self.assertEqual([cache.UPDATE], [e.op for e in events])
        self.assertEqual('b', self.cache.view().get('instances',
                                                    (1,))['host'])

    def test_update_of_missing_key_adds(self):
        """An update of a key the cache does not hold adds the row."""
        events = self.cache.apply([upd('instances', 5, id=5, host='a')])
        self.assertEqual([cache.ADD], [e.op for e in events])
        self.assertEqual(1, self.cache.view().count('instances'))

    def test_delete_of_missing_key_is_a_noop(self):
        """A delete of a missing key changes nothing and yields no event."""
        self.assertEqual([], self.cache.apply([dele('instances', 9)]))
        self.assertEqual((), self.cache.view().tables())

    def test_indexes_follow_updates_and_deletes(self):
        """Indexes move a row when its value changes and drop it on delete."""
        self.cache.apply([ins('instances', 1, id=1, host='a', state='on'),
                          ins('instances', 2, id=2, host='a', state='on')])
        self.cache.apply([upd('instances', 1, id=1, host='b', state='on')])
        view = self.cache.view()
        self.assertEqual([2], [r['id'] for r in
                               view.by_index('instances', 'host', 'a')])
        self.assertEqual([1], [r['id'] for r in
                               view.by_index('instances', 'host', 'b')])
        self.assertEqual(2, len(view.by_index('instances', 'state', 'on')))
        self.cache.apply([dele('instances', 2)])
        view = self.cache.view()
        self.assertEqual((), view.by_index('instances', 'host', 'a'))
        self.assertEqual([1], [r['id'] for r in
                               view.by_index('instances', 'state', 'on')])

    def test_indexes_follow_key_changes(self):
        """A row moved to another primary key is indexed under the new key."""
        self.cache.apply([ins('instances', 1, id=1, host='a')])
        self.cache.apply([dele('instances', 1),
                          ins('instances', 3, id=3, host='a')])
        self.assertEqual([3], [r['id'] for r in self.cache.view().by_index(
            'instances', 'host', 'a')])

    def test_null_values_are_indexed(self):
        """Rows whose indexed column is NULL can be found by None."""
        self.cache.apply([ins('instances', 1, id=1, host=None)])
        self.assertEqual(1, len(self.cache.view().by_index(
            'instances', 'host', None)))


class TestReplaceAndDrop(base.TestCase):

    def setUp(self):
        super().setUp()
        self.cache = cache.Cache(indexes={'instances': ['host']})
        self.cache.apply([ins('instances', 1, id=1, host='a'),
                          ins('instances', 2, id=2, host='a'),
                          ins('instances', 3, id=3, host='b')])

    def test_replace_table_reports_differences(self):
        """Replacing a table reports added, changed and vanished rows only."""
        events = self.cache.replace_table('instances', {
            (1,): {'id': 1, 'host': 'a'},
            (2,): {'id': 2, 'host': 'c'},
            (4,): {'id': 4, 'host': 'b'}})
        ops = sorted((e.op, e.key) for e in events)
        self.assertEqual([(cache.ADD, (4,)), (cache.DELETE, (3,)),
                          (cache.UPDATE, (2,))], ops)
        deleted = [e for e in events if e.op == cache.DELETE][0]
        self.assertEqual({'id': 3, 'host': 'b'}, dict(deleted.before))

    def test_replace_table_is_atomic_and_reindexes(self):
        """A replace is one swap: old views keep the old table and index."""
        before = self.cache.view()
        self.cache.replace_table('instances', {(7,): {'id': 7, 'host': 'z'}})
        self.assertEqual(3, before.count('instances'))
        self.assertEqual(2, len(before.by_index('instances', 'host', 'a')))
        view = self.cache.view()
        self.assertEqual(1, view.count('instances'))
        self.assertEqual((), view.by_index('instances', 'host', 'a'))
        self.assertEqual([7], [r['id'] for r in
                               view.by_index('instances', 'host', 'z')])

    def test_replace_unknown_table_adds_everything(self):
        """Replacing a table the cache never held reports only adds."""
        events = self.cache.replace_table('hosts', {(1,): {'id': 1}})
        self.assertEqual([cache.ADD], [e.op for e in events])
        self.assertEqual(('hosts', 'instances'), self.cache.view().tables())

    def test_fill_without_events(self):
        """events=False: a table that held nothing is filled, no events."""
        rows = {(1,): {'id': 1}, (2,): {'id': 2}}
        self.assertEqual([], self.cache.replace_table('hosts', rows,
                                                      events=False))
        self.assertEqual({(1,): {'id': 1}, (2,): {'id': 2}}, {
            key: dict(row)
            for key, row in self.cache.view().rows('hosts').items()})
        # Replacing a table that holds rows still reports the changes.
        events = self.cache.replace_table('hosts', {(1,): {'id': 1}},
                                          events=False)
        self.assertEqual([(cache.DELETE, (2,))],
                         [(e.op, e.key) for e in events])

    def test_replace_owned_rows_keeps_them_read_only(self):
        """owned=True: the given dicts are kept, behind read-only proxies."""
        rows = {(1,): {'id': 1, 'host': 'a'}, (2,): {'id': 2, 'host': 'b'}}
        events = self.cache.replace_table('hosts', rows, owned=True)
        self.assertEqual([(cache.ADD, (1,)), (cache.ADD, (2,))],
                         [(e.op, e.key) for e in events])
        row = self.cache.view().get('hosts', (1,))
        self.assertEqual({'id': 1, 'host': 'a'}, dict(row))

        def write():
            row['host'] = 'z'

        self.assertRaises(TypeError, write)
        self.assertIs(events[0].after, row)

    def test_replace_owned_rows_of_a_full_table_still_diffs(self):
        """owned=True over existing rows reports only the differences."""
        events = self.cache.replace_table('instances', {
            (1,): {'id': 1, 'host': 'a'}, (2,): {'id': 2, 'host': 'c'}},
            owned=True)
        self.assertEqual([(cache.UPDATE, (2,)), (cache.DELETE, (3,))],
                         [(e.op, e.key) for e in events])
        self.assertEqual(['c'], [r['host'] for r in self.cache.view().by_index(
            'instances', 'host', 'c')])

    def test_filling_an_empty_table_matches_the_general_path(self):
        """The bulk fill of an empty table gives what a diff would give."""
        rows = {(i,): {'id': i, 'host': 'h%d' % (i % 3)} for i in range(50)}
        events = self.cache.replace_table('hosts', rows)
        self.assertEqual([(cache.ADD, k, None, r) for k, r in rows.items()],
                         [(e.op, e.key, e.before, dict(e.after))
                          for e in events])
        self.assertIsInstance(events[0], cache.Event)
        self.assertEqual('hosts', events[0].table)
        rows[(1,)]['host'] = 'changed'  # the cache holds its own copy
        view = self.cache.view()
        self.assertEqual('h1', view.get('hosts', (1,))['host'])
        frozen = view.get('hosts', (2,))
        with testtools.ExpectedException(TypeError):
            frozen['host'] = 'x'
        # Replacing it again goes through the diff: nothing changed but 1.
        events = self.cache.replace_table('hosts', rows)
        self.assertEqual([(cache.UPDATE, (1,))],
                         [(e.op, e.key) for e in events])

    def test_drop_table_reports_deletes(self):
        """Dropping a table reports every row deleted and empties indexes."""
        events = self.cache.drop_table('instances')
        self.assertEqual(3, len(events))
        self.assertEqual({cache.DELETE}, {e.op for e in events})
        view = self.cache.view()
        self.assertEqual((), view.tables())
        self.assertEqual((), view.by_index('instances', 'host', 'a'))
        self.assertEqual([], self.cache.drop_table('instances'))


_keys = st.integers(min_value=0, max_value=8)
_hosts = st.sampled_from(['a', 'b', 'c', None])


def _change(op, table, key, host, n):
    """A change of the property tests' ``(op, table, key, host, n)``."""
    row = {'id': key, 'host': host, 'n': n}
    if op == wire.DELETE:
        return wire.Change(table, op, (key,), None, row, ())
    return wire.Change(table, op, (key,), row, None, ())


_changes = st.lists(st.tuples(
    st.sampled_from([wire.INSERT, wire.UPDATE, wire.DELETE]),
    st.sampled_from(['t1', 't2']), _keys, _hosts,
    st.integers(min_value=0, max_value=2)), max_size=40)


class TestModelProperty(base.TestCase):

    @settings(max_examples=150, deadline=None)
    @given(batches=st.lists(_changes, max_size=6))
    def test_matches_reference_model(self, batches):
        """Any change sequence gives a dict model's rows and true indexes."""
        model = {}
        subject = cache.Cache(indexes={'t1': ['host'], 't2': ['host', 'n']})
        for batch in batches:
            changes = []
            for op, table, key, host, n in batch:
                change = _change(op, table, key, host, n)
                changes.append(change)
                if op == wire.DELETE:
                    model.get(table, {}).pop((key,), None)
                else:
                    model.setdefault(table, {})[(key,)] = change.after
            events = subject.apply(changes)
            for event in events:
                self.assertIn(event.op, (cache.ADD, cache.UPDATE,
                                         cache.DELETE))
        view = subject.view()
        for table in ('t1', 't2'):
            self.assertEqual(model.get(table, {}),
                             {k: dict(v) for k, v in
                              view.rows(table).items()})
            for column in subject.indexes.get(table, ()):
                self.assertEqual(_recompute(view, table, column),
                                 _index_of(view, table, column))
                for value in ('a', 'b', 'c', None, 0, 1, 2):
                    expected = {k for k, r in model.get(table, {}).items()
                                if r[column] == value}
                    self.assertEqual(expected, set(view.index_keys(
                        table, column, value)))


class TestUpsertRuns(base.TestCase):
    """The one-loop path of a table's upserts agrees with change by change.

    Table ``t1`` has no declared index (its inserts and updates take the
    one-loop path), ``t2`` has one (change by change).
    """

    @settings(max_examples=150, deadline=None)
    @given(batches=st.lists(_changes, max_size=6), owned=st.booleans())
    def test_events_and_rows_match_change_by_change(self, batches, owned):
        subject = cache.Cache(indexes={'t2': ['host']})
        reference = cache.Cache(indexes={'t2': ['host']})
        for batch in batches:
            changes = [_change(*entry) for entry in batch]
            expected = []
            for change in changes:
                expected.extend(reference.apply([change]))
            events = subject.apply(changes, owned=owned)
            self.assertEqual([(e.table, e.op, e.key, e.before, e.after)
                              for e in expected],
                             [(e.table, e.op, e.key, e.before, e.after)
                              for e in events])
        for table in ('t1', 't2'):
            self.assertEqual(dict(reference.view().rows(table)),
                             dict(subject.view().rows(table)))

    def test_owned_rows_are_kept_not_copied(self):
        subject = cache.Cache()
        after = {'id': 1, 'host': 'a'}
        subject.apply([ins('t1', 1, **after)], owned=True)
        kept = subject.view().get('t1', (1,))
        subject.apply([wire.Change('t1', wire.INSERT, (2,), after, None,
                                   ())], owned=True)
        after['host'] = 'z'
        # Owned: the cache holds the given dict itself, read-only.
        self.assertEqual('z', subject.view().get('t1', (2,))['host'])
        self.assertEqual('a', kept['host'])
        self.assertRaises(TypeError, operator.setitem, kept, 'host', 'x')

    def test_unchanged_upsert_gives_no_event_and_keeps_the_row(self):
        subject = cache.Cache()
        subject.apply([ins('t1', 1, id=1, host='a')])
        before = subject.view()
        self.assertEqual([], subject.apply([upd('t1', 1, id=1, host='a')],
                                           owned=True))
        self.assertIs(before, subject.view())

    def test_missing_after_image_is_refused_whole(self):
        subject = cache.Cache()
        bad = wire.Change('t1', wire.UPDATE, (2,), None, {}, ())
        self.assertRaises(ValueError, subject.apply,
                          [ins('t1', 1, id=1), bad], owned=True)
        self.assertEqual(0, subject.view().count('t1'))
