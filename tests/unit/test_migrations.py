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

"""Tests of resumption migrations: inconsistencies, steps, the reconciler.

The reconciler tests use :class:`tests.unit.fakehost.FakeHost`; a schema
change is a new column list of a host table (a new schema version).
"""

import os
import random
import threading

import fixtures
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from consumer import cache as cache_mod
from consumer import exceptions
from consumer import handlers
from consumer import migrations
from consumer import reconciler
from consumer import source as source_mod
from oslo_publish import wire
from tests import base
from tests.unit import fakehost
from tests.unit import test_reconciler

NEW_COLUMNS = (('id', 'INTEGER'), ('name', 'VARCHAR'), ('zone', 'VARCHAR'))


class Recorder(migrations.MigrationStep):
    """Records the hooks called; resolves nothing."""

    def __init__(self):
        self.calls = []

    def removed(self, ctx, table, old):
        self.calls.append(('removed', table))

    def added(self, ctx, table, new):
        self.calls.append(('added', table))

    def changed(self, ctx, table, old, new):
        self.calls.append(('changed', table))


class FillZone(migrations.MigrationStep):
    """Fills the new ``zone`` column in place; no resync."""

    def changed(self, ctx, table, old, new):
        columns = [c[0] for c in ctx.published[table]['columns']]
        if table == 'instances' and 'zone' in columns:
            rows = ctx.rows(table)
            for row in rows.values():
                row.setdefault('zone', 'nova')
            ctx.replace(table, rows)


class PingPong(migrations.MigrationStep):
    """Adding one table drops the other: never consistent."""

    def added(self, ctx, table, new):
        ctx.snapshot(table)
        ctx.drop('b' if table == 'a' else 'a')


class _Deletes(handlers.ChangeHandler):

    def __init__(self):
        self.deleted = []

    def on_delete(self, table, key, row):
        self.deleted.append((table, key))


class _View(object):

    def has_table(self, table):
        return False


class TestInconsistencies(base.TestCase):

    def test_order_is_removed_then_added_then_changed(self):
        """Inconsistencies come removed first, then added, then changed."""
        found = migrations.inconsistencies(
            {'a': '1', 'b': '1', 'c': '1'}, {'b': '2', 'c': '1', 'd': '1'})
        self.assertEqual([('removed', 'a', '1', None),
                          ('added', 'd', None, '1'),
                          ('changed', 'b', '1', '2')], found)

    def test_not_converging_raises_migration_error(self):
        """Steps that keep undoing each other stop after MAX_ROUNDS."""
        published = {'a': {'pk': ['id'], 'version': '1'},
                     'b': {'pk': ['id'], 'version': '1'}}
        ctx = migrations.Context('nova', {}, published, _View(),
                                 lambda table: {})
        error = self.assertRaises(exceptions.MigrationError,
                                  migrations.migrate, ctx, [PingPong()])
        self.assertIn('10 rounds', str(error))

    def test_failing_step_raises_migration_error(self):
        """A step's exception becomes a MigrationError naming the step."""

        class Broken(migrations.MigrationStep):
            def removed(self, ctx, table, old):
                raise KeyError(table)

        ctx = migrations.Context('nova', {'a': '1'}, {}, _View(),
                                 lambda table: {})
        error = self.assertRaises(exceptions.MigrationError,
                                  migrations.migrate, ctx, [Broken()])
        self.assertIn('Broken', str(error))

    def test_registered_steps_follow_the_entry_points(self):
        """Entry-point steps (stevedore) come first, then register()ed."""
        step = Recorder()
        migrations.register(step)
        self.addCleanup(migrations.unregister, step)
        found = migrations.steps()
        self.assertIs(step, found[-1])
        self.assertIsInstance(found[0], migrations.LogStep)


class MigrationTestCase(test_reconciler.ReconcilerTestCase):

    def make(self, cache=None, state=None, steps=()):
        self.cache = cache or cache_mod.Cache()
        self.dispatcher = handlers.Dispatcher(self.metrics, 100)
        self.addCleanup(self.dispatcher.stop)
        self.deletes = _Deletes()
        self.dispatcher.add('deletes', self.deletes)
        self.verifier = test_reconciler.verify.Verifier(
            self.conf, [self.STREAM], self.metrics)
        source = source_mod.RPCSnapshotSource(self.conf, self.STREAM,
                                              caller=self.host.caller)
        rec = reconciler.Reconciler(
            self.conf, self.STREAM, source, self.cache, state or self.state,
            self.dispatcher, self.metrics, clock=self.clock,
            rng=random.Random(1), migration_steps=list(steps))
        rec.start(run_thread=False)
        self.addCleanup(rec.stop)
        return rec

    def synced(self, steps=()):
        rec = self.make(steps=steps)
        rec.poll()
        self.assertTrue(rec.synced)
        return rec

    def alter(self, table, columns, fill=None):
        """Change a host table's columns (rows get ``fill``)."""
        info = self.host.tables[table]
        info['columns'] = [list(c) for c in columns]
        info['version'] = wire.schema_version(columns)
        for row in info['rows'].values():
            for name, value in (fill or {}).items():
                row[name] = value

    def stored_versions(self):
        return self.state.schema_versions(self.STREAM, 'oslo_publish',
                                          'snapshot')


class TestReconcilerMigrations(MigrationTestCase):

    def test_changed_table_is_resynced_alone(self):
        """A new version resyncs that table; other tables keep deltas."""
        self.host.add_table('hosts')
        self.host.change('hosts', wire.INSERT, {'id': 1, 'name': 'h1'})
        rec = self.synced()
        self.alter('instances', NEW_COLUMNS, {'zone': 'z0'})
        self.feed(rec, self.host.write('hosts', wire.INSERT,
                                       {'id': 2, 'name': 'h2'}))
        self.feed(rec, self.host.write(
            'instances', wire.INSERT, {'id': 40, 'name': 'v', 'zone': 'z'}))
        self.assertFalse(rec.synced)
        rec.poll()
        self.assertEqual(1, self.resyncs('schema'))
        self.assertEqual(1, rec.counters['migrations'])
        self.assertConverged(rec)
        self.assertEqual({(1,), (2,)}, set(self.cache.view().rows('hosts')))
        self.assertEqual(self.host.tables['instances']['version'],
                         self.stored_versions()['instances'])
        self.assertEqual('z0', self.cache.view().get('instances',
                                                     (1,))['zone'])

    def _in_flight_while_waiting(self, rec, payload):
        """Feed ``payload`` from another thread once the stream waits.

        The feeding thread starts when the migration first waits for a
        delta (and needs the stream's lock, which the wait releases):
        without the wait, the delta never arrives.
        """
        wait = rec._arrived.wait
        fed = []

        def waiting(timeout=None):
            if not fed:
                fed.append(None)
                thread = threading.Thread(
                    target=lambda: fed.append(self.feed(rec, payload)))
                thread.start()
                self.addCleanup(thread.join, 10)
            return wait(timeout)

        self.useFixture(fixtures.MockPatchObject(rec._arrived, 'wait',
                                                 waiting))
        return fed

    def test_migration_waits_for_deltas_its_snapshot_overtook(self):
        """Deltas numbered before the snapshot but still in flight.

        A busy host's last deltas often arrive after the snapshot opened
        at a watermark that covers them: the migration waits for them
        (up to gap_timeout) instead of falling back to a full resync.
        """
        rec = self.synced()
        self.alter('instances', NEW_COLUMNS, {'zone': 'z0'})
        self.feed(rec, self.host.write(
            'instances', wire.INSERT, {'id': 40, 'name': 'v', 'zone': 'z'}))
        late = self.host.write('instances', wire.INSERT,
                               {'id': 41, 'name': 'w', 'zone': 'y'})
        fed = self._in_flight_while_waiting(rec, late)
        rec.poll()
        self.assertEqual([None, 'buffered'], fed)
        self.assertEqual(1, rec.counters['migrations'])
        self.assertEqual(1, self.resyncs('schema'))
        self.assertConverged(rec)

    def test_migration_gives_up_after_gap_timeout(self):
        """A delta that never comes: a full resync after gap_timeout."""
        self.conf.set_override('gap_timeout', 0.05, 'consumer')
        rec = self.synced()
        self.alter('instances', NEW_COLUMNS, {'zone': 'z0'})
        self.feed(rec, self.host.write(
            'instances', wire.INSERT, {'id': 40, 'name': 'v', 'zone': 'z'}))
        self.host.write('instances', wire.INSERT,
                        {'id': 41, 'name': 'w', 'zone': 'y'})  # lost
        rec.poll()
        self.assertEqual(0, rec.counters['migrations'])
        self.assertEqual(1, self.resyncs('schema'))
        self.assertConverged(rec)

    def test_user_step_fills_default_without_resync(self):
        """A step may fill a new column in place and accept the version."""
        rec = self.synced(steps=[FillZone()])
        self.alter('instances', NEW_COLUMNS, {'zone': 'nova'})
        self.feed(rec, self.host.write(
            'instances', wire.INSERT, {'id': 41, 'name': 'v', 'zone': 'b'}))
        rec.poll()
        self.assertConverged(rec)
        self.assertEqual('nova', self.cache.view().get('instances',
                                                       (1,))['zone'])
        self.assertEqual(self.host.tables['instances']['version'],
                         self.stored_versions()['instances'])

    def test_column_defaults_reshape_rows_without_snapshot(self):
        """ColumnDefaults adds and drops columns in place, exactly."""
        step = migrations.ColumnDefaults({'instances': {'zone': 'nova'}})
        rec = self.synced(steps=[step])
        self.alter('instances', NEW_COLUMNS, {'zone': 'nova'})
        self.feed(rec, self.host.write(
            'instances', wire.INSERT, {'id': 60, 'name': 'v', 'zone': 'b'}))
        rec.poll()
        self.assertConverged(rec)
        self.assertEqual('b', self.cache.view().get('instances',
                                                    (60,))['zone'])
        dropped = (('id', 'INTEGER'), ('zone', 'VARCHAR'))
        self.alter('instances', dropped)
        for row in self.host.tables['instances']['rows'].values():
            row.pop('name')
        self.feed(rec, self.host.write(
            'instances', wire.INSERT, {'id': 61, 'zone': 'c'}))
        rec.poll()
        self.assertConverged(rec)
        self.assertEqual(2, rec.counters['migrations'])
        self.assertEqual(self.host.tables['instances']['version'],
                         self.stored_versions()['instances'])

    def test_column_defaults_leave_retyped_tables_to_a_resync(self):
        """Same column names with new types: the default step reads."""
        step = migrations.ColumnDefaults({'instances': {'name': 'x'}})
        rec = self.synced(steps=[step])
        self.alter('instances', (('id', 'BIGINT'), ('name', 'VARCHAR')))
        self.host.tables['instances']['rows'][(1,)]['name'] = 'fresh'
        self.feed(rec, self.host.write(
            'instances', wire.INSERT, {'id': 62, 'name': 'v'}))
        rec.poll()
        self.assertConverged(rec)
        self.assertEqual('fresh', self.cache.view().get('instances',
                                                        (1,))['name'])

    def test_added_table_is_snapshotted_and_deltas_kept(self):
        """A new table is read from the snapshot; no delta is lost."""
        self.host.add_table('flavors')
        rec = self.synced()
        self.host.add_table('hosts', columns=NEW_COLUMNS)
        self.host.change('hosts', wire.INSERT,
                         {'id': 1, 'name': 'h', 'zone': 'z'})
        self.alter('instances', NEW_COLUMNS, {'zone': 'z'})
        self.assertEqual('applied', self.feed(rec, self.host.write(
            'flavors', wire.INSERT, {'id': 1, 'name': 'f1'})))
        self.assertEqual('buffered', self.feed(rec, self.host.write(
            'instances', wire.INSERT, {'id': 48, 'name': 'v', 'zone': 'z'})))
        self.assertEqual('buffered', self.feed(rec, self.host.write(
            'hosts', wire.INSERT, {'id': 2, 'name': 'h', 'zone': 'z'})))
        self.assertEqual('buffered', self.feed(rec, self.host.write(
            'flavors', wire.INSERT, {'id': 2, 'name': 'f2'})))
        rec.poll()
        self.assertTrue(rec.synced)
        self.assertConverged(rec)
        view = self.cache.view()
        for table in ('hosts', 'flavors'):
            self.assertEqual(self.host.tables[table]['rows'],
                             {k: dict(r) for k, r in
                              view.rows(table).items()})
        self.assertEqual(1, self.resyncs('schema'))

    def test_steps_run_in_order_removed_added_changed(self):
        """Hooks are called removed, then added, then changed."""
        self.host.add_table('gone')
        recorder = Recorder()
        rec = self.synced(steps=[recorder])
        self.host.change('gone', wire.INSERT, {'id': 1, 'name': 'x'})
        del self.host.tables['gone']
        self.host.add_table('hosts')
        self.alter('instances', NEW_COLUMNS, {'zone': 'z'})
        self.feed(rec, self.host.write(
            'instances', wire.INSERT, {'id': 42, 'name': 'v', 'zone': 'z'}))
        rec.poll()
        self.assertEqual([('removed', 'gone'), ('added', 'hosts'),
                          ('changed', 'instances')], recorder.calls)
        self.assertConverged(rec)
        view = self.cache.view()
        self.assertFalse(view.has_table('gone'))
        self.assertTrue(view.has_table('hosts'))
        self.assertNotIn('gone', self.stored_versions())

    def invalidated_then_altered(self, rec, *others):
        """An invalidation under the old version, then a new version.

        What a binlog reader that reads DDL publishes: the table's
        invalidation, and it re-learns the table.
        """
        change = wire.encode_change(wire.invalidation('instances',
                                                      'schema_change'))
        message = self.host.message([self.host.commit(change, *others)])
        self.alter('instances', NEW_COLUMNS, {'zone': 'z0'})
        self.assertEqual('applied', self.feed(rec, message))

    def test_reread_announcing_a_new_version_runs_the_steps(self):
        """An invalidation's re-read that sees a new version migrates.

        Not adopted silently by the re-read: the steps see the change
        (one schema resync), then the table is re-read at that version.
        """
        recorder = Recorder()
        rec = self.synced(steps=[recorder])
        self.invalidated_then_altered(rec)
        rec.poll()   # the re-read: a new version, a migration planned
        self.assertEqual([], recorder.calls)
        self.assertEqual(['instances'],
                         rec.status_info()['pending_invalidations'])
        self.clock.advance(rec._resync_at - self.clock.now)
        rec.poll()   # the migration, then the re-read
        rec.poll()
        self.assertEqual([('changed', 'instances')], recorder.calls)
        self.assertEqual(1, self.resyncs('schema'))
        self.assertEqual(1, rec.counters['migrations'])
        self.assertEqual([], rec.status_info()['pending_invalidations'])
        self.assertConverged(rec)
        self.assertEqual(self.host.tables['instances']['version'],
                         self.stored_versions()['instances'])
        self.assertEqual('z0', self.cache.view().get('instances',
                                                     (1,))['zone'])

    def test_reread_after_an_in_place_migration(self):
        """Rows a step reshaped in place are re-read when invalidated."""
        step = migrations.ColumnDefaults({'instances': {'zone': 'nova'}})
        rec = self.synced(steps=[step])
        # Changed unseen before the invalidation: only a re-read has it.
        self.host.tables['instances']['rows'][(1,)]['name'] = 'unseen'
        self.invalidated_then_altered(rec)
        for _ in range(4):
            self.clock.advance(max(rec._resync_at - self.clock.now, 0))
            rec.poll()
        self.assertEqual(1, rec.counters['migrations'])
        self.assertEqual([], rec.status_info()['pending_invalidations'])
        self.assertConverged(rec)
        self.assertEqual('unseen', self.cache.view().get('instances',
                                                         (1,))['name'])

    def test_invalidation_in_flight_of_an_in_place_migration(self):
        """An invalidation among the migrated deltas is re-read after it.

        The step reshapes the held rows; the invalidated table's rows at
        the watermark are not known exactly: it is re-read.
        """
        step = migrations.ColumnDefaults({'instances': {'zone': 'nova'}})
        rec = self.synced(steps=[step])
        self.host.tables['instances']['rows'][(1,)]['name'] = 'unseen'
        self.alter('instances', NEW_COLUMNS, {'zone': 'z0'})
        change = wire.encode_change(wire.invalidation('instances',
                                                      'schema_change'))
        self.assertEqual('buffered', self.feed(rec, self.host.message(
            [self.host.commit(change)])))
        for _ in range(4):
            self.clock.advance(max(rec._resync_at - self.clock.now, 0))
            rec.poll()
        self.assertEqual(1, rec.counters['migrations'])
        self.assertEqual(1, self.resyncs('invalidate'))
        self.assertEqual(1, rec.status_info()[
            'invalidated:instances:schema_change'])
        self.assertConverged(rec)
        self.assertEqual('unseen', self.cache.view().get('instances',
                                                         (1,))['name'])

    def test_removed_table_sends_deletes(self):
        """Dropping a removed table tells handlers about every row."""
        self.host.add_table('gone')
        self.host.change('gone', wire.INSERT, {'id': 1, 'name': 'x'})
        rec = self.synced()
        del self.host.tables['gone']
        self.alter('instances', NEW_COLUMNS, {'zone': 'z'})
        self.feed(rec, self.host.write(
            'instances', wire.INSERT, {'id': 43, 'name': 'v', 'zone': 'z'}))
        rec.poll()
        self.dispatcher.stop()
        self.assertIn(('gone', (1,)), self.deletes.deleted)

    def test_deltas_during_migration_are_buffered(self):
        """Deltas arriving while the steps run are applied after them."""
        test = self

        class Feeds(migrations.MigrationStep):
            def changed(self, ctx, table, old, new):
                test.assertEqual('buffered', test.feed(rec, test.host.write(
                    'instances', wire.INSERT,
                    {'id': 44, 'name': 'during', 'zone': 'z'})))

        rec = self.synced(steps=[Feeds()])
        self.alter('instances', NEW_COLUMNS, {'zone': 'z'})
        self.feed(rec, self.host.write(
            'instances', wire.INSERT, {'id': 45, 'name': 'v', 'zone': 'z'}))
        rec.poll()
        self.assertEqual(
            'during', self.cache.view().get('instances', (44,))['name'])
        self.assertConverged(rec)

    def test_not_converging_is_retried_and_reported(self):
        """A MigrationError fails the resync; the stream is not synced."""

        class Flip(migrations.MigrationStep):
            def changed(self, ctx, table, old, new):
                raise exceptions.MigrationError('no way')

        rec = self.synced(steps=[Flip()])
        self.alter('instances', NEW_COLUMNS, {'zone': 'z'})
        self.feed(rec, self.host.write(
            'instances', wire.INSERT, {'id': 46, 'name': 'v', 'zone': 'z'}))
        rec.poll()
        self.assertFalse(rec.synced)
        self.assertIn('no way', rec.last_error)
        self.assertEqual(1, rec.counters['resync_failures'])

    def test_state_failure_during_migration_is_retried(self):
        """A migration the state store refuses is retried; nothing is lost."""
        rec = self.synced()
        self.alter('instances', NEW_COLUMNS, {'zone': 'z'})
        self.feed(rec, self.host.write(
            'instances', wire.INSERT, {'id': 49, 'name': 'v', 'zone': 'z'}))
        engine = self.state.engine
        with engine.begin() as conn:
            conn.exec_driver_sql('ALTER TABLE consumer_positions RENAME TO '
                                 'moved_away')
        rec.poll()
        self.assertFalse(rec.synced)
        self.assertEqual(1, rec.counters['resync_failures'])
        with engine.begin() as conn:
            conn.exec_driver_sql('ALTER TABLE moved_away RENAME TO '
                                 'consumer_positions')
        self.clock.advance(1.0)
        rec.poll()
        self.assertTrue(rec.synced)
        self.assertConverged(rec)
        self.assertEqual(self.host.tables['instances']['version'],
                         self.stored_versions()['instances'])

    def test_resume_checks_first_delta_against_stored_versions(self):
        """After a restart, a delta of a new version runs the migration."""
        rec = self.synced()
        rec.stop()
        self.alter('instances', NEW_COLUMNS, {'zone': 'z'})
        again = self.make()
        self.assertTrue(again.synced)
        self.feed(again, self.host.write(
            'instances', wire.INSERT, {'id': 47, 'name': 'v', 'zone': 'z'}))
        again.poll()
        self.assertEqual(1, self.resyncs('schema'))
        self.assertConverged(again)
        self.assertEqual(self.host.tables['instances']['version'],
                         self.stored_versions()['instances'])


class TestMigrationArrivalOrder(MigrationTestCase):

    @settings(max_examples=int(os.environ.get('CONSUMER_FUZZ_EXAMPLES', 30)),
              deadline=None)
    @given(st.data())
    def test_schema_change_in_any_arrival_order_converges(self, data):
        """Old and new version deltas in any order converge exactly."""
        stream = 's%d' % self.getUniqueInteger()
        host = fakehost.FakeHost(stream)
        host.add_table('instances')
        host.add_table('hosts')
        self.host, self.STREAM = host, stream
        self.conf.set_override('streams', [stream], 'consumer')
        fill = data.draw(st.booleans(), label='fill step')
        rec = self.synced(steps=[FillZone()] if fill else [])
        messages = []

        def write(extra, table=None):
            table = table or data.draw(st.sampled_from(['instances',
                                                        'hosts']))
            key = data.draw(st.integers(1, 4), label='key')
            rows = host.tables[table]['rows']
            op = wire.INSERT if (key,) not in rows else data.draw(
                st.sampled_from([wire.UPDATE, wire.DELETE]))
            row = {'id': key, 'name': 'v%d' % host.seq}
            if table == 'instances':
                row.update(extra)
            messages.append(host.write(table, op, row))

        for _ in range(data.draw(st.integers(0, 6), label='before')):
            write({})
        self.alter('instances', NEW_COLUMNS, {'zone': 'nova'})
        # The consumer learns the new version from a delta of the table.
        write({'zone': 'c'}, 'instances')
        for _ in range(data.draw(st.integers(0, 5), label='after')):
            write({'zone': data.draw(st.sampled_from(['a', 'b']))})
        order = data.draw(st.permutations(messages), label='order')
        extra = data.draw(st.lists(st.sampled_from(messages), max_size=3),
                          label='duplicates')
        for payload in list(order) + extra:
            try:
                self.feed(rec, payload)
            except exceptions.Rejected:
                pass
            rec.poll()
        for _ in range(3):
            self.clock.advance(1.0)
            rec.poll()
        self.assertTrue(rec.synced)
        self.assertConverged(rec)
        view = self.cache.view()
        self.assertEqual(host.tables['hosts']['rows'],
                         {k: dict(r) for k, r in view.rows('hosts').items()})
        self.assertEqual(host.tables['instances']['version'],
                         self.stored_versions()['instances'])
