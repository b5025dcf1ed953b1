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

"""The MariaDB row binlog reader, on a private server with a binlog.

Writes are made with plain SQL on a connection no middleware watches
(except where session capture is the reference), and the reader must
return them transaction by transaction, in commit order, as the exact
wire changes session capture publishes.
"""

import datetime
import json
import time

import sqlalchemy as sa

from oslo_publish.logcapture import base as log_base
from oslo_publish.logcapture import binlog
from oslo_publish.logcapture import binlog_decode
from oslo_publish.logcapture import staging
from oslo_publish import exceptions
from oslo_publish import migration
from oslo_publish import outbox
from oslo_publish import schema
from tests import base
from tests import private_mariadb

DDL = (
    'CREATE TABLE parent (id INT PRIMARY KEY, name VARCHAR(32), '
    'secret VARCHAR(32), flag TINYINT(1), at DATETIME(6)) '
    'ENGINE=InnoDB CHARSET=utf8mb4',
    'CREATE TABLE child (id INT PRIMARY KEY, parent_id INT, note TEXT, '
    'FOREIGN KEY (parent_id) REFERENCES parent (id) ON DELETE CASCADE) '
    'ENGINE=InnoDB CHARSET=utf8mb4',
    'CREATE TABLE other (id INT PRIMARY KEY, v INT) ENGINE=InnoDB',
    'CREATE TABLE plain (id INT PRIMARY KEY, name VARCHAR(32)) '
    'ENGINE=InnoDB',
    'CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, '
    'child_id INT, what VARCHAR(16)) ENGINE=InnoDB',
    'CREATE TRIGGER child_audit AFTER INSERT ON child FOR EACH ROW '
    "INSERT INTO audit (child_id, what) VALUES (NEW.id, 'insert')",
)


def collect(reader, count, timeout=30.0):
    """Read until ``count`` transactions with changes came (or fail).

    Progress marks (no changes) are left out.
    """
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        if time.monotonic() > deadline:
            raise AssertionError('%d of %d transactions read: %r'
                                 % (len(out), count, out))
        out.extend(tx for tx in reader.read(0.2) if tx.changes)
    return out


class BinlogTestCase(base.TestCase):
    """A fresh database on the private server, and readers on it."""

    TABLES = ('parent', 'child', 'audit', 'plain')
    EXCLUDE = ('parent.secret',)

    def setUp(self):
        super().setUp()
        self.db = self.useFixture(private_mariadb.DatabaseFixture())
        self.engine = self.db.engine
        self.conf.set_override('tables', list(self.TABLES), 'oslo_publish')
        self.conf.set_override('exclude_columns', list(self.EXCLUDE),
                               'oslo_publish')

    def create(self, statements=DDL):
        with self.engine.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)

    def published(self, metadata=None):
        return schema.resolve_tables(self.conf, metadata, self.engine)

    def reader(self, published=None, after=None):
        reader = binlog.Reader(self.conf, self.engine,
                               published or self.published(), 'bl')
        self.addCleanup(reader.close)
        reader.start(after)
        return reader

    def sql(self, *statements):
        """One transaction of raw SQL, no middleware."""
        with self.engine.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)


class TestBinlogReader(BinlogTestCase):

    def setUp(self):
        super().setUp()
        self.create()
        self.pub = self.published()

    def key(self, table, *values):
        return self.pub[table].encode_key(values)

    def test_check_passes_on_the_binlog_server(self):
        binlog.Reader.check(self.engine)
        binlog.Reader.setup(self.conf, self.engine, self.pub, 'bl')
        binlog.Reader.teardown(self.conf, self.engine, self.pub, 'bl')

    def test_check_names_the_missing_setting(self):
        # The private server is this process's own: a global setting
        # changed for one test is put back at its end.
        self.sql('SET GLOBAL binlog_row_metadata = MINIMAL')
        self.addCleanup(self.sql, 'SET GLOBAL binlog_row_metadata = FULL')
        exc = self.assertRaises(binlog.PrerequisiteError,
                                binlog.Reader.check, self.engine)
        self.assertEqual('binlog_row_metadata', exc.option)
        self.assertIn('binlog_row_metadata', str(exc))
        self.assertIn('FULL', str(exc))

    def test_check_names_the_missing_privilege(self):
        user = base.unique_name('u')
        self.sql("CREATE USER %s@'127.0.0.1' IDENTIFIED BY 'pw'" % user,
                 "GRANT ALL ON %s.* TO %s@'127.0.0.1'" % (self.db.name, user))
        self.addCleanup(self.sql, "DROP USER %s@'127.0.0.1'" % user)
        limited = sa.create_engine(self.engine.url.set(
            username=user, password='pw'))
        self.addCleanup(limited.dispose)
        exc = self.assertRaises(binlog.PrerequisiteError,
                                binlog.Reader.check, limited)
        self.assertEqual('GRANT', exc.option)
        self.assertIn('REPLICATION SLAVE', str(exc))

    def test_multi_table_transaction_excluded_and_skipped(self):
        reader = self.reader()
        self.sql("INSERT INTO parent VALUES (1, 'p1', 's1', 1, "
                 "'2026-01-02 03:04:05.678901')",
                 "INSERT INTO child VALUES (10, 1, 'n\U0001f600')",
                 'INSERT INTO other VALUES (1, 1)')
        self.sql('INSERT INTO other VALUES (2, 2)')   # not published
        self.sql("UPDATE parent SET secret = 's2' WHERE id = 1")  # excluded
        self.sql("UPDATE parent SET name = 'p1b', secret = 's3' "
                 "WHERE id = 1", 'DELETE FROM child WHERE id = 10')
        first, second = collect(reader, 2)
        self.assertIsInstance(first, log_base.LogTransaction)
        self.assertLess(first.position, second.position)
        self.assertIsInstance(first.xid, int)
        self.assertEqual(datetime.timezone.utc, first.committed_at.tzinfo)
        self.assertLess(abs((datetime.datetime.now(datetime.timezone.utc)
                             - first.committed_at).total_seconds()), 60)
        at = {'__t': 'datetime', 'v': '2026-01-02T03:04:05.678901'}
        self.assertEqual([
            {'table': 'parent', 'op': 'insert', 'key': [1],
             'after': {'id': 1, 'name': 'p1', 'flag': True, 'at': at}},
            {'table': 'child', 'op': 'insert', 'key': [10],
             'after': {'id': 10, 'parent_id': 1, 'note': 'n\U0001f600'}},
            {'table': 'audit', 'op': 'insert', 'key': [1],
             'after': {'id': 1, 'child_id': 10, 'what': 'insert'}},
        ], first.changes)
        self.assertEqual({n: self.pub[n].header()
                          for n in ('parent', 'child', 'audit')},
                         first.tables)
        self.assertEqual([
            {'table': 'parent', 'op': 'update', 'key': [1],
             'after': {'id': 1, 'name': 'p1b', 'flag': True, 'at': at},
             'before': {'name': 'p1'}, 'changed': ['name']},
            {'table': 'child', 'op': 'delete', 'key': [10],
             'before': {'id': 10, 'parent_id': 1, 'note': 'n\U0001f600'}},
        ], second.changes)
        self.assertNotIn('secret', json.dumps([first, second], default=str))
        self.assertEqual([], reader.read(0.3))

    def test_consolidated_per_row_as_session_capture(self):
        reader = self.reader()
        self.sql("INSERT INTO plain VALUES (1, 'a'), (2, 'b'), (4, 'd')",
                 "UPDATE plain SET name = 'a2' WHERE id = 1",
                 'DELETE FROM plain WHERE id = 2',
                 'UPDATE plain SET id = 3 WHERE id = 1')
        self.sql("INSERT INTO plain VALUES (5, 'x')",
                 'DELETE FROM plain WHERE id = 5')   # nothing at all
        self.sql("UPDATE plain SET name = 'c' WHERE id = 3",
                 "UPDATE plain SET name = 'd' WHERE id = 4")  # no change
        first, second = collect(reader, 2)
        self.assertEqual([
            {'table': 'plain', 'op': 'insert', 'key': [4],
             'after': {'id': 4, 'name': 'd'}},
            {'table': 'plain', 'op': 'insert', 'key': [3],
             'after': {'id': 3, 'name': 'a2'}}], first.changes)
        self.assertEqual(1, len(second.changes))
        self.assertEqual('update', second.changes[0]['op'])
        self.assertEqual(['name'], second.changes[0]['changed'])

    def test_cascade_and_truncate_invalidate(self):
        self.sql("INSERT INTO parent (id, name) VALUES (1, 'a')",
                 "INSERT INTO child VALUES (10, 1, 'x')")
        reader = self.reader()
        # The binlog has the parent's row only: InnoDB deletes the
        # children itself, the log does not say which.
        self.sql('DELETE FROM parent WHERE id = 1')
        self.sql('TRUNCATE TABLE audit')
        cascade, truncate = collect(reader, 2)
        self.assertEqual([
            {'table': 'parent', 'op': 'delete', 'key': [1],
             'before': {'id': 1, 'name': 'a', 'flag': None, 'at': None}},
            {'table': 'child', 'op': 'invalidate', 'cause': 'cascade'},
        ], cascade.changes)
        self.assertEqual([{'table': 'audit', 'op': 'invalidate',
                           'cause': 'truncate'}], truncate.changes)

    def test_ddl_relearns_the_table(self):
        reader = self.reader(self.pub)
        declared, parent = self.pub['child'], self.pub['parent']
        self.sql('ALTER TABLE child ADD COLUMN rank INT DEFAULT 7')
        self.sql("INSERT INTO child (id, note) VALUES (11, 'y')")
        ddl, insert = collect(reader, 2)
        self.assertEqual([{'table': 'child', 'op': 'invalidate',
                           'cause': 'schema_change'}], ddl.changes)
        self.assertEqual({'id': 11, 'parent_id': None, 'note': 'y',
                          'rank': 7}, insert.changes[0]['after'])
        new = self.published()['child']
        self.assertNotEqual(declared.version, new.version)
        self.assertEqual(new.header(), insert.tables['child'])
        # The dict the reader was made with is the one the process's
        # snapshot server and relay hold (install()'s tables): it has
        # the new table too, so a snapshot announces the version the
        # deltas carry (with a copy it kept the old one until the host
        # restarted, and a consumer migrating in between resynced
        # twice).
        self.assertEqual(new.header(), self.pub['child'].header())
        self.assertEqual(new.columns, self.pub['child'].columns)
        self.assertIs(parent, self.pub['parent'])

    def test_ddl_keeps_the_declared_types(self):
        metadata = sa.MetaData()
        sa.Table('jdoc', metadata,
                 sa.Column('id', sa.Integer, primary_key=True,
                           autoincrement=False),
                 sa.Column('doc', sa.JSON), sa.Column('span', sa.Interval),
                 mysql_engine='InnoDB')
        metadata.create_all(self.engine)
        self.conf.set_override('tables', ['jdoc'], 'oslo_publish')
        self.conf.set_override('exclude_columns', [], 'oslo_publish')
        pub = self.published(metadata)
        jdoc = pub['jdoc']
        reader = self.reader(pub)
        self.sql('ALTER TABLE jdoc ADD COLUMN extra INT')
        self.sql("INSERT INTO jdoc VALUES "
                 "(1, '{\"a\": [1]}', '1970-01-03 00:00:01', 5)")
        ddl, insert = collect(reader, 2)
        self.assertEqual('schema_change', ddl.changes[0]['cause'])
        self.assertEqual({
            'id': 1, 'doc': jdoc.encode_value('doc', {'a': [1]}),
            'span': jdoc.encode_value('span', datetime.timedelta(
                days=2, seconds=1)),
            'extra': 5}, insert.changes[0]['after'])
        self.assertNotEqual(jdoc.version, insert.tables['jdoc']['version'])
        # The shared dict has the re-learnt table, declared types kept.
        self.assertEqual(insert.tables['jdoc'], pub['jdoc'].header())
        self.assertIs(jdoc.table.c.doc.type.__class__,
                      pub['jdoc'].table.c.doc.type.__class__)

    def test_large_transaction(self):
        reader = self.reader()
        rows = ', '.join("(%d, %d, '%s')" % (i, 0, 'x' * 200)
                         for i in range(1, 20001))
        self.sql("INSERT INTO parent (id, name) VALUES (0, 'root')",
                 'INSERT INTO child (id, parent_id, note) VALUES ' + rows,
                 "UPDATE child SET note = 'y' WHERE id <= 5000")
        tx, = collect(reader, 1, timeout=120)
        ops = [(c['table'], c['op']) for c in tx.changes]
        self.assertEqual(1 + 20000 + 20000, len(ops))
        notes = {c['key'][0]: c['after']['note'] for c in tx.changes
                 if c['table'] == 'child'}
        self.assertEqual(20000, len(notes))
        self.assertEqual('y', notes[5000])
        self.assertEqual('x' * 200, notes[5001])

    def test_resume_after_a_position(self):
        reader = self.reader()
        for i in range(1, 4):
            self.sql("INSERT INTO parent (id, name) VALUES (%d, 'n')" % i)
        txs = collect(reader, 3)
        reader.confirm(txs[0].position)
        self.assertIsNotNone(reader.lag())
        reader.close()
        again = self.reader(after=txs[0].position)
        self.assertEqual([t.position for t in txs[1:]],
                         [t.position for t in collect(again, 2)])

    def test_purged_position_is_lost_not_skipped(self):
        reader = self.reader()
        self.sql("INSERT INTO parent (id, name) VALUES (1, 'n')")
        tx, = collect(reader, 1)
        reader.close()
        admin = sa.create_engine(self.db.server.url)
        self.addCleanup(admin.dispose)
        with admin.connect() as conn:
            # PURGE keeps a file a replica connection still reads.
            base.wait_for(lambda: not [
                r for r in conn.exec_driver_sql('SHOW PROCESSLIST')
                if r[4] == 'Binlog Dump'], 30,
                message='the closed reader still has a dump thread')
            conn.exec_driver_sql('FLUSH BINARY LOGS')
            self.sql("INSERT INTO parent (id, name) VALUES (2, 'n')")
            conn.exec_driver_sql('FLUSH BINARY LOGS')
            last = conn.exec_driver_sql('SHOW BINARY LOGS').fetchall()[-1]

            def purged():
                # Refused (quietly) until InnoDB checkpointed the files.
                conn.exec_driver_sql("PURGE BINARY LOGS TO '%s'" % last[0])
                return [r[0] for r in conn.exec_driver_sql(
                    'SHOW BINARY LOGS')] == [last[0]]
            base.wait_for(purged, 30, interval=0.1,
                          message='the binlog was not purged')
        again = self.reader(after=tx.position)
        exc = self.assertRaises(binlog.LogPositionLost, collect, again, 1)
        self.assertIn(binlog_decode.gtid_of(tx.position), str(exc))

    def test_snapshot_cut_with_the_stager(self):
        migration.upgrade(self.engine)
        stager = staging.Stager(self.engine, 'bl', binlog.Reader(
            self.conf, self.engine, self.pub, 'bl'))
        stager.start()
        self.addCleanup(stager.stop)
        self.assertTrue(stager.streaming.wait(30))
        self.sql("INSERT INTO parent (id, name) VALUES (1, 'a')")
        self.sql('INSERT INTO other VALUES (1, 1)')   # not published
        # Another instance, as the snapshot server's: no shared memory.
        cutter = binlog.Reader(self.conf, self.engine, self.pub, 'bl')
        with self.engine.connect() as conn:
            conn.exec_driver_sql(
                'SET TRANSACTION ISOLATION LEVEL REPEATABLE READ')
            conn.exec_driver_sql(
                'START TRANSACTION WITH CONSISTENT SNAPSHOT')
            visible = cutter.snapshot_cut(conn, timeout=30)
            self.sql("INSERT INTO parent (id, name) VALUES (2, 'b')")
            seen = conn.exec_driver_sql(
                'SELECT id FROM parent').scalars().all()
        self.assertEqual([1], seen)
        table = outbox.outbox
        query = sa.select(table.c.id, table.c.xid, table.c.txid,
                          table.c.log_position.label('position')).order_by(
            table.c.id)

        def entries():
            with self.engine.connect() as conn:
                rows = conn.execute(query).fetchall()
            return rows if len(rows) == 2 else None
        first, second = base.wait_for(entries, 30,
                                      message='second entry not staged')
        self.assertTrue(visible(first))
        self.assertFalse(visible(second))
        self.assertLess(first.position, visible.position)
        self.assertLess(visible.position, second.position)

    def test_catch_up_waits_for_staging(self):
        migration.upgrade(self.engine)
        stager = staging.Stager(self.engine, 'bl', binlog.Reader(
            self.conf, self.engine, self.pub, 'bl'))
        stager.start()
        self.addCleanup(stager.stop)
        self.assertTrue(stager.streaming.wait(30))
        for i in range(1, 6):
            self.sql("INSERT INTO plain VALUES (%d, 'n')" % i)
        self.sql('INSERT INTO other VALUES (1, 1)')   # not published
        staged = binlog.catch_up(self.engine, 'bl', self.conf, self.pub, 30)
        with self.engine.connect() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(
                outbox.outbox)).scalar()
            last = conn.execute(sa.select(sa.func.max(
                outbox.outbox.c.log_position))).scalar()
        self.assertEqual(5, count)
        self.assertLessEqual(last, staged)

    def test_snapshot_cut_reads_the_binlog_up_to_s_only(self):
        """Nothing written after S: the cut neither blocks nor guesses."""
        migration.upgrade(self.engine)
        with self.engine.connect() as conn:
            gtid = conn.exec_driver_sql(
                'SELECT @@global.gtid_binlog_pos').scalar()
        with self.engine.begin() as conn:
            conn.execute(outbox.log_positions.insert().values(
                stream='bl', position=binlog_decode.position_of(
                    binlog_decode.parse_gtid(gtid))))
        self.sql('INSERT INTO other VALUES (1, 1)')   # not published
        cutter = binlog.Reader(self.conf, self.engine, self.pub, 'bl')

        def cut():
            with self.engine.connect() as conn:
                conn.exec_driver_sql(
                    'START TRANSACTION WITH CONSISTENT SNAPSHOT')
                return cutter.snapshot_cut(conn, timeout=2)
        visible = cut()   # no stager runs: nothing needed staging
        with self.engine.connect() as conn:
            now = conn.exec_driver_sql(
                'SELECT @@global.gtid_binlog_pos').scalar()
        self.assertEqual(now, binlog_decode.gtid_of(visible.position))
        self.sql("INSERT INTO plain VALUES (1, 'a')")
        exc = self.assertRaises(exceptions.SnapshotError, cut)
        self.assertIn('bl', str(exc))

    def test_wait_visible(self):
        reader = self.reader()
        self.sql("INSERT INTO plain VALUES (1, 'a')")
        tx, = collect(reader, 1)
        with self.engine.connect() as conn:
            reader.wait_visible(conn, [tx], timeout=10)
        later = tx._replace(position=binlog_decode.position_of(
            binlog_decode.parse_gtid(binlog_decode.gtid_of(tx.position))[
                :2] + (10 ** 9,)))
        with self.engine.connect() as conn:
            self.assertRaises(exceptions.SnapshotError, reader.wait_visible,
                              conn, [later], timeout=0.2)

    def test_wait_visible_compares_binlog_places(self):
        """The streaming reader checks its file and offset, kept conn."""
        reader = self.reader()
        self.sql("INSERT INTO plain VALUES (1, 'a')")
        tx, = collect(reader, 1)
        self.assertIsNotNone(reader._end_of(tx.position))
        with self.engine.connect() as conn:
            reader.wait_visible(conn, [tx], timeout=10)
            kept = reader._visible_conn
            self.assertIsNotNone(kept)
            reader.wait_visible(conn, [tx], timeout=10)
            self.assertIs(kept, reader._visible_conn)
            # A place past the binlog's end is never visible.
            path, offset = reader._file_pos[tx.position]
            reader._file_pos[tx.position] = (path, offset + 10 ** 9)
            self.assertRaises(exceptions.SnapshotError, reader.wait_visible,
                              conn, [tx], timeout=0.2)
        reader.close()
        self.assertIsNone(reader._visible_conn)

    def test_one_reader_per_stream(self):
        first = self.reader()
        second = binlog.Reader(self.conf, self.engine, self.pub, 'bl')
        self.addCleanup(second.close)
        self.assertRaises(binlog.ReaderBusy, second.start, None)
        other = binlog.Reader(self.conf, self.engine, self.pub, 'bl2')
        self.addCleanup(other.close)
        other.start(None)   # another stream: another lock
        first.close()
        second.start(None)
        self.sql("INSERT INTO plain VALUES (1, 'a')")
        self.assertEqual(1, len(collect(second, 1)))
        other.close()


def staged_position(engine, stream):
    """The stream's staged position, '' when none (or no row yet)."""
    with engine.connect() as conn:
        return conn.execute(sa.select(outbox.log_positions.c.position).where(
            outbox.log_positions.c.stream == stream)).scalar() or ''
