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


"""oslo-publish-manage creates the outbox tables on every database."""

import os
import subprocess
import sys

import fixtures
import sqlalchemy as sa

from oslo_publish.cmd import manage
from oslo_publish.cmd import relay
from oslo_publish.cmd import status
from oslo_publish import migration
from oslo_publish import outbox
from tests import base


class _ManageTests(object):

    def setUp(self):
        super().setUp()
        self.config_file = os.path.join(self.tmpdir, 'host.conf')
        with open(self.config_file, 'w') as f:
            f.write('[database]\nconnection = %s\n' % self.db.url)

    def manage(self, *args):
        return manage.main(['--config-file', self.config_file] + list(args))

    def tables(self):
        return set(sa.inspect(self.engine).get_table_names())

    def test_upgrade_creates_the_tables_as_defined(self):
        """upgrade creates the outbox tables exactly as outbox.py has them."""
        self.assertEqual(0, self.manage('upgrade'))
        self.assertEqual({'oslo_publish_outbox', 'oslo_publish_streams',
                          'oslo_publish_log_positions',
                          outbox.VERSION_TABLE}, self.tables())
        inspector = sa.inspect(self.engine)
        for table in outbox.metadata.sorted_tables:
            got = {c['name']: c for c in inspector.get_columns(table.name)}
            self.assertEqual([c.name for c in table.columns], list(got))
            for col in table.columns:
                self.assertEqual(col.nullable, got[col.name]['nullable'],
                                 '%s.%s' % (table.name, col.name))
            self.assertEqual(
                [c.name for c in table.primary_key.columns],
                inspector.get_pk_constraint(table.name)[
                    'constrained_columns'])
        indexes = {i['name']: i['column_names']
                   for i in inspector.get_indexes('oslo_publish_outbox')}
        self.assertEqual(['stream', 'seq', 'id'],
                         indexes['oslo_publish_outbox_pending'])
        self.assertEqual(migration.head(), migration.current(self.engine))

    def test_migrated_schema_matches_the_table_definitions(self):
        """alembic finds no difference between the DB and outbox.py."""
        from alembic import autogenerate
        from alembic import migration as alembic_migration
        self.assertEqual(0, self.manage('upgrade'))
        with self.engine.connect() as conn:
            ctx = alembic_migration.MigrationContext.configure(
                conn, opts={'compare_type': True,
                            'version_table': outbox.VERSION_TABLE})
            diff = autogenerate.compare_metadata(ctx, outbox.metadata)
        self.assertEqual([], diff)

    def test_upgrade_is_idempotent_and_outbox_usable(self):
        """A second upgrade changes nothing; the relay's rows fit."""
        self.assertEqual(0, self.manage('upgrade'))
        self.assertEqual(0, self.manage('upgrade'))
        self.assertEqual(migration.head(), migration.current(self.engine))
        with self.engine.begin() as conn:
            conn.execute(outbox.outbox.insert().values(
                stream='s', txid='t', payload='x' * 70000,
                committed_at=sa.func.now()))
            conn.execute(outbox.streams.insert().values(stream='s',
                                                        last_seq=0))
        with self.engine.connect() as conn:
            self.assertEqual(70000, len(conn.execute(
                sa.select(outbox.outbox.c.payload)).scalar()))

    def test_upgrade_from_first_revision_keeps_rows(self):
        """Tables made by revision 0001, with rows, upgrade to head intact."""
        self.assertEqual(0, self.manage('upgrade', '0001'))
        self.assertEqual('0001', migration.current(self.engine))
        with self.engine.begin() as conn:
            conn.execute(outbox.outbox.insert().values(
                stream='s', txid='t1', payload='{"changes": []}', seq=4,
                committed_at=sa.func.now()))
            conn.execute(outbox.outbox.insert().values(
                stream='s', txid='t2', payload='{"changes": [1]}',
                committed_at=sa.func.now()))
            conn.execute(outbox.streams.insert().values(stream='s',
                                                        last_seq=4))
        self.assertEqual(0, self.manage('upgrade'))
        self.assertEqual(migration.head(), migration.current(self.engine))
        with self.engine.connect() as conn:
            self.assertEqual(
                [('t1', 4, '{"changes": []}'), ('t2', None,
                                                '{"changes": [1]}')],
                [tuple(r) for r in conn.execute(sa.select(
                    outbox.outbox.c.txid, outbox.outbox.c.seq,
                    outbox.outbox.c.payload).order_by(outbox.outbox.c.id))])
            self.assertEqual(4, conn.execute(sa.select(
                outbox.streams.c.last_seq)).scalar())

    def test_host_alembic_version_is_untouched(self):
        """A pre-existing host alembic_version table keeps its content."""
        with self.engine.begin() as conn:
            conn.exec_driver_sql('CREATE TABLE alembic_version '
                                 '(version_num VARCHAR(32) NOT NULL)')
            conn.exec_driver_sql("INSERT INTO alembic_version "
                                 "VALUES ('host_rev_42')")
        self.assertEqual(0, self.manage('upgrade'))
        with self.engine.connect() as conn:
            self.assertEqual([('host_rev_42',)], conn.exec_driver_sql(
                'SELECT version_num FROM alembic_version').all())
        self.assertIn(outbox.VERSION_TABLE, self.tables())

    def test_current_reports_none_then_head(self):
        """current prints none before upgrade, the revision after."""
        self.assertIsNone(migration.current(self.engine))
        self.assertEqual(0, self.manage('current'))
        self.assertEqual(0, self.manage('upgrade'))
        self.assertEqual(0, self.manage('current'))
        self.assertEqual(migration.head(), migration.current(self.engine))

    def _two_databases(self, extra=''):
        """A config: [database] a decoy, [placement_database] ours."""
        decoy = os.path.join(self.tmpdir, 'decoy.sqlite')
        path = os.path.join(self.tmpdir, 'placement.conf')
        with open(path, 'w') as f:
            f.write('[database]\nconnection = sqlite:///%s\n'
                    '[placement_database]\nconnection = %s\n%s'
                    % (decoy, self.db.url, extra))
        return path, sa.create_engine('sqlite:///%s' % decoy)

    def test_database_group_option_selects_the_connection(self):
        """[oslo_publish] database_group makes upgrade use that group."""
        path, decoy = self._two_databases(
            '[oslo_publish]\ndatabase_group = placement_database\n')
        self.addCleanup(decoy.dispose)
        self.assertEqual(0, manage.main(['--config-file', path, 'upgrade']))
        self.assertIn(outbox.outbox.name, self.tables())
        self.assertNotIn(outbox.outbox.name,
                         sa.inspect(decoy).get_table_names())

    def test_database_group_flag_selects_the_connection(self):
        """--database-group makes upgrade and current use that group."""
        path, decoy = self._two_databases()
        self.addCleanup(decoy.dispose)
        self.assertEqual(0, manage.main(
            ['--config-file', path, '--database-group',
             'placement_database', 'upgrade']))
        self.assertEqual(migration.head(), migration.current(self.engine))
        self.assertIsNone(migration.current(decoy))

    def test_status_reads_the_database_group(self):
        """oslo-publish-status --database-group reads that group's tables."""
        path, decoy = self._two_databases()
        self.addCleanup(decoy.dispose)
        self.assertEqual(0, self.manage('upgrade'))
        self.assertEqual(0, status.main(
            ['--config-file', path, '--database-group',
             'placement_database']))
        # The decoy has no tables: without the flag status fails.
        self.assertEqual(1, status.main(['--config-file', path]))


class TestManageSQLite(_ManageTests, base.BackendTestCase):
    BACKEND = 'sqlite'


class TestManagePostgreSQL(_ManageTests, base.BackendTestCase):
    BACKEND = 'postgresql'


class TestManageMySQL(_ManageTests, base.BackendTestCase):
    BACKEND = 'mysql'


class TestManageCommand(base.TestCase):

    def test_console_script_upgrades_from_the_package_path(self):
        """The installed command runs from any directory."""
        path = os.path.join(self.tmpdir, 'x.sqlite')
        conf = os.path.join(self.tmpdir, 'x.conf')
        with open(conf, 'w') as f:
            f.write('[database]\nconnection = sqlite:///%s\n' % path)
        out = subprocess.run(
            [sys.executable, '-m', 'oslo_publish.cmd.manage',
             '--config-file', conf, 'upgrade'],
            cwd='/', capture_output=True, text=True, check=True)
        self.assertIn('revision %s' % migration.head(), out.stdout)
        self.assertIn('oslo_publish_outbox', sa.inspect(
            sa.create_engine('sqlite:///%s' % path)).get_table_names())

    def test_current_prints_only_the_revision(self):
        """current writes the revision alone on stdout, logs on stderr."""
        conf = os.path.join(self.tmpdir, 'x.conf')
        with open(conf, 'w') as f:
            f.write('[database]\nconnection = sqlite:///%s\n'
                    % os.path.join(self.tmpdir, 'x.sqlite'))
        out = subprocess.run(
            [sys.executable, '-m', 'oslo_publish.cmd.manage',
             '--config-file', conf, 'current'],
            capture_output=True, text=True, check=True)
        self.assertEqual('none\n', out.stdout)

    def test_bad_database_group_fails(self):
        """A database group that is not a group name fails with 2."""
        conf = os.path.join(self.tmpdir, 'x.conf')
        with open(conf, 'w') as f:
            f.write('[DEFAULT]\n')
        self.assertEqual(2, manage.main(['--config-file', conf,
                                         '--database-group', 'a b',
                                         'current']))

    def test_relay_names_the_unset_group(self):
        """The relay refuses an unset connection of the chosen group."""
        conf = os.path.join(self.tmpdir, 'x.conf')
        with open(conf, 'w') as f:
            f.write('[oslo_publish]\nstream = s\n'
                    'database_group = api_database\n')
        err = self.useFixture(fixtures.StringStream('err')).stream
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', err))
        self.assertEqual(2, relay.main(['--config-file', conf]))
        err.seek(0)
        self.assertIn('[api_database] connection is not set', err.read())

    def test_missing_connection_fails(self):
        """Without [database] connection the command exits with 2."""
        conf = os.path.join(self.tmpdir, 'empty.conf')
        with open(conf, 'w') as f:
            f.write('[DEFAULT]\n')
        self.assertEqual(2, manage.main(['--config-file', conf,
                                         'upgrade']))
