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

"""One contract for the state store, run on SQLite, PostgreSQL, MariaDB."""

import datetime
import decimal
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import uuid

from oslo_db import exception as db_exc
import sqlalchemy as sa

from consumer.cmd import dump
from consumer import state
from oslo_publish import wire
from tests import base

STREAM, DRIVER, KIND = 'nova', 'oslo_publish', 'bus'
UTC = datetime.timezone.utc


def ins(key, **row):
    return wire.Change('instances', wire.INSERT, key, row, None, ())


def upd(key, **row):
    return wire.Change('instances', wire.UPDATE, key, row, {},
                       tuple(row))


def dele(key):
    return wire.Change('instances', wire.DELETE, key, None, {}, ())


class _Injected(Exception):
    """A failure injected into a statement by a test."""


def _script(name):
    found = shutil.which(name) or os.path.join(
        os.path.dirname(sys.executable), name)
    return found


class _StateStoreContract(object):
    """The behaviour every state store backend must show."""

    def setUp(self):
        super().setUp()
        self.conf.set_override('connection', self.db.url,
                               'consumer_database')
        self.store = state.StateStore(self.conf)
        self.addCleanup(self.store.close)
        self.store.upgrade()
        self.t0 = datetime.datetime(2026, 11, 22, 1, 2, 3, 123456,
                                    tzinfo=UTC)

    def _commit(self, seq, changes, versions=None, store=None):
        (store or self.store).commit_batch(
            STREAM, DRIVER, KIND, seq, self.t0, changes,
            versions if versions is not None else {'instances': 'v1'})

    def _rows(self, table='instances', store=None):
        return dict((store or self.store).load_rows(STREAM, table))

    def _insert_legacy(self, scope_id, seq):
        with self.engine.begin() as conn:
            conn.execute(state.positions.insert().values(
                scope_id=scope_id, seq=seq, state='live',
                schema_version='old'))

    # ---------------------------------------------------------- schema

    def test_upgrade_is_idempotent(self):
        """upgrade() twice leaves the schema at head with its tables."""
        self.store.upgrade()
        self.assertEqual('0003', self.store.current_revision())
        names = set(sa.inspect(self.engine).get_table_names())
        self.assertLessEqual({'consumer_positions', 'consumer_rows',
                              'consumer_streams',
                              'consumer_alembic_version'}, names)

    # ----------------------------------------------------- commit_batch

    def test_commit_batch_stores_rows_and_position(self):
        """A batch stores its rows and the unit's position together."""
        self._commit(7, [ins((1,), id=1, host='a'),
                         ins((2,), id=2, host='b')])
        self.assertEqual({(1,): {'id': 1, 'host': 'a'},
                          (2,): {'id': 2, 'host': 'b'}}, self._rows())
        scope = self.store.load(STREAM, DRIVER, KIND)['instances']
        self.assertEqual(7, scope.seq)
        self.assertEqual(self.t0, scope.committed_at)
        self.assertEqual('v1', scope.schema_version)

    def test_commit_batch_is_idempotent(self):
        """Replays and writes of missing rows converge to the same rows."""
        batch = [ins((1,), id=1, host='a'), upd((2,), id=2, host='b'),
                 dele((3,))]
        self._commit(1, batch)
        self._commit(1, batch)
        self._commit(2, [upd((1,), id=1, host='c'), dele((2,)),
                         dele((2,))])
        self.assertEqual({(1,): {'id': 1, 'host': 'c'}}, self._rows())
        self.assertEqual(2, self.store.get_scope(
            'instances', STREAM, DRIVER, KIND).seq)

    def test_epoch_is_stored_with_the_positions(self):
        """set_epoch() records the epoch on every position of the unit."""
        self._commit(3, [ins((1,), id=1)], {'instances': 'v1',
                                            'hosts': 'v1'})
        self.assertIsNone(self.store.load(STREAM, DRIVER, KIND)[
            'instances'].epoch)
        self.store.set_epoch(STREAM, DRIVER, KIND, 'e' * 32)
        self._commit(4, [ins((2,), id=2)])
        loaded = self.store.load(STREAM, DRIVER, KIND)
        self.assertEqual({'instances': 'e' * 32, 'hosts': 'e' * 32},
                         {t: scope.epoch for t, scope in loaded.items()})
        self.assertEqual(4, loaded['instances'].seq)

    def test_commit_batch_never_lowers_position(self):
        """A stale batch does not move the position backwards."""
        self._commit(9, [ins((1,), id=1)])
        self._commit(4, [])
        self.assertEqual(9, self.store.get_scope(
            'instances', STREAM, DRIVER, KIND).seq)

    def test_commit_batch_advances_only_its_own_unit(self):
        """Units differing by collector, fetcher or a NULL part stay apart.

        A unit without NULL parts is advanced by prebuilt statements, one
        with a NULL part by statements built for it: both raise their own
        positions (and commit times) and nothing else.
        """
        later = self.t0 + datetime.timedelta(seconds=5)
        units = [(STREAM, DRIVER, KIND), (STREAM, 'other', KIND),
                 (STREAM, DRIVER, 'other'), (STREAM, None, None)]
        for unit in units:
            self.store.commit_batch(unit[0], unit[1], unit[2], 3, self.t0,
                                    [], {'instances': 'v1'})
        for moved, unit in enumerate(units):
            self.store.commit_batch(unit[0], unit[1], unit[2], 10 + moved,
                                    later, [], {'instances': 'v1'})
            for index, other in enumerate(units):
                scope = self.store.get_scope('instances', *other)
                if index <= moved:
                    self.assertEqual((10 + index, later),
                                     (scope.seq, scope.committed_at))
                else:
                    self.assertEqual((3, self.t0),
                                     (scope.seq, scope.committed_at))

    def test_commit_batch_moves_every_table_of_the_stream(self):
        """A batch raises the position of every table of the unit."""
        self._commit(1, [ins((1,), id=1),
                         wire.Change('hosts', wire.INSERT, ('h',),
                                     {'name': 'h'}, None, ())],
                     {'instances': 'v1', 'hosts': 'h1'})
        self._commit(5, [ins((2,), id=2)])
        loaded = self.store.load(STREAM, DRIVER, KIND)
        self.assertEqual({'instances': 5, 'hosts': 5},
                         {t: s.seq for t, s in loaded.items()})
        self.assertEqual({'instances': 'v1', 'hosts': 'h1'},
                         self.store.schema_versions(STREAM, DRIVER, KIND))

    def test_commit_batch_records_schema_versions(self):
        """A new schema version replaces the stored one for that table."""
        self._commit(1, [ins((1,), id=1)], {'instances': 'v1'})
        self._commit(2, [ins((2,), id=2)], {'instances': 'v2'})
        self.assertEqual({'instances': 'v2'},
                         self.store.schema_versions(STREAM, DRIVER, KIND))

    def test_commit_batch_is_atomic(self):
        """A failure mid-batch leaves neither rows nor position changed."""
        self._commit(1, [ins((1,), id=1, host='a')])

        def fail(conn, cursor, statement, *args):
            if statement.lstrip().upper().startswith(
                    'UPDATE CONSUMER_POSITIONS'):
                raise _Injected('injected failure')

        engine = self.store.engine
        sa.event.listen(engine, 'before_cursor_execute', fail)
        try:
            self.assertRaises((_Injected, db_exc.DBError), self._commit, 2, [
                upd((1,), id=1, host='b'), ins((2,), id=2, host='b')])
        finally:
            sa.event.remove(engine, 'before_cursor_execute', fail)
        self.assertEqual({(1,): {'id': 1, 'host': 'a'}}, self._rows())
        self.assertEqual(1, self.store.get_scope(
            'instances', STREAM, DRIVER, KIND).seq)

    def test_concurrent_streams(self):
        """Batches of several streams committed in parallel all land."""
        errors = []

        def commit(stream, base_key):
            try:
                for i in range(25):
                    changes = [ins((base_key + 2 * i + j,), id=j)
                               for j in range(2)]
                    changes.append(dele((base_key + 900 + i,)))
                    self.store.commit_batch(stream, DRIVER, KIND, i + 1,
                                            self.t0, changes,
                                            {'instances': 'v1'})
            except Exception as exc:
                errors.append(exc)

        threads = [threading.Thread(target=commit, args=('s%d' % n,
                                                         n * 1000))
                   for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual([], errors)
        for n in range(4):
            self.assertEqual(50, len(list(self.store.load_rows(
                's%d' % n, 'instances'))))
            self.assertEqual(25, self.store.get_scope(
                'instances', 's%d' % n, DRIVER, KIND).seq)

    def test_persist_rows_off_keeps_positions_only(self):
        """With persist_rows off, positions are stored and rows are not."""
        self.conf.set_override('persist_rows', False, 'consumer')
        store = state.StateStore(self.conf)
        self.addCleanup(store.close)
        self._commit(3, [ins((1,), id=1)], store=store)
        self.assertEqual({}, self._rows(store=store))
        self.assertEqual(3, store.get_scope('instances', STREAM, DRIVER,
                                            KIND).seq)

    # ---------------------------------------------------------- rows

    def test_load_rows_in_primary_key_order(self):
        """Rows come back in key order: integer 2 before 10."""
        self._commit(1, [ins((k,), id=k) for k in (10, 2, 33, 1, 100)])
        self.assertEqual([(1,), (2,), (10,), (33,), (100,)],
                         [k for k, _ in self.store.load_rows(
                             STREAM, 'instances')])
        changes = [wire.Change('pairs', wire.INSERT, key,
                               {'a': key[0], 'b': key[1]}, None, ())
                   for key in (('b', 10), ('a', 10), ('a', 9), ('b', 2))]
        self._commit(2, changes, {'pairs': 'p1'})
        self.assertEqual([('a', 9), ('a', 10), ('b', 2), ('b', 10)],
                         [k for k, _ in self.store.load_rows(
                             STREAM, 'pairs')])

    def test_values_round_trip(self):
        """Every wire value type survives the state store unchanged."""
        row = {'id': uuid.UUID(int=7), 'at': self.t0,
               'naive': datetime.datetime(2026, 1, 2, 3, 4, 5, 6),
               'day': datetime.date(2026, 2, 3), 'price': decimal.Decimal(
                   '12.345'), 'blob': b'\x00\xff', 'doc': {'k': [1, 2]},
               'ok': True, 'none': None, 'ratio': float('inf'),
               'text': 'h\u00e9llo \u2603' * 20000}
        self._commit(1, [wire.Change('things', wire.INSERT,
                                     (uuid.UUID(int=7),), row, None, ())],
                     {'things': 't1'})
        self.assertEqual({(uuid.UUID(int=7),): row},
                         self._rows('things'))

    def test_replace_table(self):
        """replace_table swaps the rows and sets the position exactly."""
        self._commit(50, [ins((1,), id=1), ins((2,), id=2)])
        self.store.replace_table(STREAM, DRIVER, KIND, 'instances',
                                 {(2,): {'id': 2, 'v': 'x'},
                                  (3,): {'id': 3}}, 40, 'v2',
                                 committed_at=self.t0)
        self.assertEqual({(2,): {'id': 2, 'v': 'x'}, (3,): {'id': 3}},
                         self._rows())
        scope = self.store.get_scope('instances', STREAM, DRIVER, KIND)
        self.assertEqual((40, 'v2', self.t0),
                         (scope.seq, scope.schema_version,
                          scope.committed_at))

    def test_replace_table_bulk(self):
        """A table larger than one bulk chunk is replaced completely."""
        rows = {(i,): {'id': i, 'name': 'n%d' % i} for i in range(1234)}
        self.store.replace_table(STREAM, DRIVER, KIND, 'instances', rows,
                                 3, 'v1')
        self.assertEqual(rows, self._rows())

    def test_drop_table(self):
        """drop_table forgets the table's position and rows only."""
        self._commit(1, [ins((1,), id=1),
                         wire.Change('hosts', wire.INSERT, ('h',),
                                     {'name': 'h'}, None, ())],
                     {'instances': 'v1', 'hosts': 'h1'})
        self.store.drop_table(STREAM, DRIVER, KIND, 'instances')
        self.assertEqual({}, self._rows())
        self.assertEqual(['hosts'],
                         list(self.store.load(STREAM, DRIVER, KIND)))
        self.assertEqual(1, len(self._rows('hosts')))

    # ---------------------------------------------- CloudKitty lookup

    def test_get_scope_missing(self):
        """An unknown unit has no state."""
        self.assertIsNone(self.store.get_scope('instances', STREAM, DRIVER,
                                               KIND))

    def test_get_scope_adopts_legacy_row(self):
        """(A, B, C, D) missing but (A, NULL, NULL, NULL) present: adopted."""
        self._insert_legacy('instances', 42)
        scope = self.store.get_scope('instances', STREAM, DRIVER, KIND)
        self.assertEqual((42, 'live', 'old'),
                         (scope.seq, scope.state, scope.schema_version))
        with self.engine.connect() as conn:
            stored = conn.execute(sa.select(
                state.positions.c.scope_key, state.positions.c.collector,
                state.positions.c.fetcher).where(
                    state.positions.c.scope_id == 'instances')).all()
        self.assertEqual([(STREAM, DRIVER, KIND)],
                         [tuple(r) for r in stored])
        # Adopted once: another unit no longer finds a legacy row.
        self.assertIsNone(self.store.get_scope('instances', 'cinder',
                                               DRIVER, KIND))

    def test_exact_row_wins_over_legacy_row(self):
        """An existing (A, B, C, D) is used and the legacy row left alone."""
        self._insert_legacy('instances', 42)
        self._commit(7, [ins((1,), id=1)])
        self.assertEqual(7, self.store.get_scope(
            'instances', STREAM, DRIVER, KIND).seq)
        self.assertEqual(42, self.store.get_scope(
            'instances', None, None, None).seq)

    def test_load_adopts_legacy_rows_of_named_tables(self):
        """load(tables=...) adopts legacy rows of the tables it names."""
        self._insert_legacy('instances', 42)
        self._insert_legacy('hosts', 43)
        loaded = self.store.load(STREAM, DRIVER, KIND, tables=['instances'])
        self.assertEqual({'instances': 42},
                         {t: s.seq for t, s in loaded.items()})
        self.assertEqual({'instances': 42}, {
            t: s.seq for t, s in self.store.load(STREAM, DRIVER,
                                                 KIND).items()})

    def test_replace_table_adopts_legacy_row(self):
        """A resync of a legacy scope updates that row instead of adding."""
        self._insert_legacy('instances', 42)
        self.store.replace_table(STREAM, DRIVER, KIND, 'instances',
                                 {(1,): {'id': 1}}, 50, 'v1')
        with self.engine.connect() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(
                state.positions)).scalar()
        self.assertEqual(1, count)
        self.assertEqual(50, self.store.get_scope(
            'instances', STREAM, DRIVER, KIND).seq)

    # ------------------------------------------------ state and status

    def test_set_state(self):
        """set_state records a table's state and last error."""
        self.store.set_state(STREAM, DRIVER, KIND, 'instances',
                             'snapshotting', 'timeout')
        scope = self.store.get_scope('instances', STREAM, DRIVER, KIND)
        self.assertEqual((None, 'snapshotting', 'timeout'),
                         (scope.seq, scope.state, scope.last_error))

    def test_status_round_trip(self):
        """set_status stores and replaces a stream's status."""
        self.store.set_status(STREAM, 'snapshotting', None, {'a': 1})
        self.store.set_status(STREAM, 'live', 'gap at 7', {'a': 2})
        self.store.set_status('cinder', 'initial')
        status = self.store.status()
        self.assertEqual({'cinder', STREAM}, set(status))
        self.assertEqual(('live', 'gap at 7', {'a': 2}),
                         status[STREAM][:3])
        self.assertIsNotNone(status[STREAM].updated_at)

    # --------------------------------------------------- command line

    def _config_file(self, url):
        path = os.path.join(self.tmpdir, 'consumer.conf')
        with open(path, 'w') as f:
            f.write('[consumer_database]\nconnection = %s\n' % url)
        return path

    def _run(self, *argv):
        result = subprocess.run(list(argv), capture_output=True, text=True,
                                timeout=120)
        self.assertEqual(0, result.returncode, result.stderr)
        return result.stdout

    def test_manage_upgrade_keeps_data_and_is_idempotent(self):
        """consumer-manage upgrades a first-revision store without loss."""
        fresh = self.useFixture(base.DatabaseFixture(self.BACKEND))
        path = self._config_file(fresh.url)
        manage = _script('consumer-manage')
        self.assertEqual('None', self._run(manage, '--config-file', path,
                                           'current').strip())
        self._run(manage, '--config-file', path, 'upgrade',
                  '--revision', '0001')
        store = state.StateStore.from_url(fresh.url)
        self.addCleanup(store.close)
        self._commit(7, [ins((1,), id=1, host='a')], store=store)
        with store.engine.begin() as conn:
            conn.execute(state.positions.insert().values(
                scope_id='hosts', seq=3))
        self._run(manage, '--config-file', path, 'upgrade')
        self._run(manage, '--config-file', path, 'upgrade')
        self.assertEqual(self.store.current_revision(),
                         self._run(manage, '--config-file', path,
                                   'current').strip())
        self.assertEqual({(1,): {'id': 1, 'host': 'a'}},
                         self._rows(store=store))
        loaded = store.load(STREAM, DRIVER, KIND, tables=['hosts'])
        self.assertEqual({'instances': 7, 'hosts': 3},
                         {t: s.seq for t, s in loaded.items()})

    def _fails(self, *argv):
        result = subprocess.run(list(argv), capture_output=True, text=True,
                                timeout=120)
        return result.returncode, result.stdout, result.stderr

    def _assert_one_line(self, command, code, expected_code, err, *words):
        self.assertEqual(expected_code, code, err)
        lines = err.splitlines()
        self.assertEqual(1, len(lines), err)
        self.assertTrue(lines[0].startswith(command + ': '), err)
        for word in words:
            self.assertIn(word, lines[0])

    def test_commands_on_a_store_without_tables_say_so(self):
        """status and dump name the store and the fix in one line."""
        fresh = self.useFixture(base.DatabaseFixture(self.BACKEND))
        path = self._config_file(fresh.url)
        code, out, err = self._fails(_script('consumer-status'),
                                     '--config-file', path)
        self._assert_one_line('consumer-status', code, 2, err,
                              'no consumer tables', 'consumer-manage')
        self.assertEqual('', out)
        code, out, err = self._fails(_script('consumer-dump'),
                                     '--config-file', path,
                                     '--table', 'instances')
        self._assert_one_line('consumer-dump', code, 1, err,
                              'no consumer tables', 'consumer-manage')
        self.assertEqual('', out)

    def test_dump_prints_rows_in_key_order(self):
        """consumer-dump prints wire-encoded rows, key order, keys sorted."""
        self._commit(1, [ins((k,), id=k, at=self.t0, name='r%d' % k)
                         for k in (10, 2, 1)])
        path = self._config_file(self.db.url)
        out = self._run(_script('consumer-dump'), '--config-file', path,
                        '--table', 'instances')
        lines = out.splitlines()
        self.assertEqual([1, 2, 10], [json.loads(li)['id'] for li in lines])
        expected = wire.encode_row({'id': 1, 'at': self.t0, 'name': 'r1'})
        self.assertEqual(json.dumps(expected, sort_keys=True), lines[0])
        out = self._run(_script('consumer-dump'), '--config-file', path,
                        '--table', 'instances', '--stream', 'other')
        self.assertEqual('', out)
        self.store.commit_batch('other', DRIVER, KIND, 1, self.t0,
                                [ins((5,), id=5)], {'instances': 'v1'})
        self.assertRaises(ValueError, dump.dump, self.store, 'instances',
                          out=io.StringIO())
        buf = io.StringIO()
        self.assertEqual(1, dump.dump(self.store, 'instances', 'other',
                                      out=buf))
        self.assertEqual('{"id": 5}\n', buf.getvalue())


class TestStateStoreSQLite(_StateStoreContract, base.BackendTestCase):
    BACKEND = 'sqlite'

    def test_status_write_waits_for_another_writer(self):
        """A status write waits for the write lock, never fails at once.

        Another connection holds the write lock when the status UPDATE
        starts and gives it back shortly after: a transaction that read
        before writing got "database is locked" at once (SQLite's busy
        timeout covers a transaction's first access only).
        """
        import sqlite3
        self.store.set_status(STREAM, 'initial')
        path = self.db.url[len('sqlite:///'):]
        holder = sqlite3.connect(path, isolation_level=None)
        self.addCleanup(holder.close)
        holder.execute('BEGIN IMMEDIATE')
        holder.execute("UPDATE consumer_streams SET last_error = 'held'")
        writing = threading.Event()

        def _statement(conn, cursor, statement, *args):
            if statement.lstrip().upper().startswith(
                    'UPDATE CONSUMER_STREAMS'):
                writing.set()

        engine = self.store.engine
        sa.event.listen(engine, 'before_cursor_execute', _statement)
        self.addCleanup(sa.event.remove, engine, 'before_cursor_execute',
                        _statement)
        errors = []

        def _write():
            try:
                self.store.set_status(STREAM, 'live', None, {'a': 3})
            except Exception as exc:  # noqa: reported by the test
                errors.append(exc)

        writer = threading.Thread(target=_write)
        writer.start()
        self.assertTrue(writing.wait(30))
        # Let the UPDATE reach the lock before giving it back.
        writer.join(0.3)
        holder.execute('COMMIT')
        writer.join(30)
        self.assertFalse(writer.is_alive())
        self.assertEqual([], errors)
        self.assertEqual(('live', None, {'a': 3}),
                         self.store.status()[STREAM][:3])

    def test_commands_on_an_unreachable_store_say_so(self):
        """status and dump: one line naming the store, password hidden."""
        path = self._config_file(
            'postgresql+psycopg2://u:secret@127.0.0.1:%d/x'
            % base._free_port())
        for argv, expected in ((['consumer-status'], 2),
                               (['consumer-dump', '--table', 't'], 1)):
            code, out, err = self._fails(_script(argv[0]), '--config-file',
                                         path, *argv[1:])
            self._assert_one_line(argv[0], code, expected, err,
                                  'cannot read the state store', '***')
            self.assertNotIn('secret', err)


class TestStateStorePostgreSQL(_StateStoreContract, base.BackendTestCase):
    BACKEND = 'postgresql'


class TestStateStoreMySQL(_StateStoreContract, base.BackendTestCase):
    BACKEND = 'mysql'
