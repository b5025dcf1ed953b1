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

"""A published table's schema changes on the host while it streams.

The supported flow (doc/source/versioning.rst): the host's code and
database change by expand and contract, and every host process of the
stream restarts with the new code (``install()`` computes the schema
versions). Here the host runner
(:mod:`tests.functional.consumer_host`, its model chosen by
``CONSUMER_HOST_SCHEMA``) is restarted, and alembic operations run on
the host database while its writers commit:

1. expand: ``items.zone`` is added while the old code writes; the host
   restarts with the code that knows ``zone``;
2. contract: the host restarts with code that no longer uses
   ``items.seen``, and the column is dropped while it writes.

The consumer must end with exactly the host tables (every row and column,
cache and state store), the new schema versions, and the host's last
sequence number applied: no delta lost, no gap resync. The default steps
read ``items`` again at each change; the ``IN_PLACE`` variant registers
:class:`consumer.migrations.ColumnDefaults`, which reshapes the held rows
instead. The ``Logical`` variant captures with ``capture = logical``
(a private PostgreSQL cluster, a private MariaDB server with a row
binlog): the reader publishes a new version when the database's
definition changes, from the log.
"""

from alembic import migration as alembic_migration
from alembic import operations
import fixtures
import sqlalchemy as sa

from consumer import migrations
from consumer import service
from consumer import state as state_mod
from oslo_publish import schema
from tests import base
from tests.functional import consumer_host
from tests.functional import test_binlog_e2e
from tests.functional import test_consumer_e2e
from tests.functional import test_logical_e2e


class _Watch(migrations.MigrationStep):
    """Records the inconsistencies it is shown; resolves none."""

    def __init__(self):
        self.seen = []

    def changed(self, ctx, table, old, new):
        self.seen.append((table, old, new))


class _SchemaChange(test_consumer_e2e._Base):

    IN_PLACE = False
    #: The capture invalidates the table at each DDL (the binlog reader
    #: reads the ALTER TABLE). The consumer re-reads it after the
    #: migration the new version needs, or not at all when the
    #: invalidation is among the deltas the migration's snapshot covers
    #: (so how many are counted depends on timing).
    DDL_INVALIDATES = False

    def restart_host(self, model):
        """Stop the host process; start it again with ``model`` code."""
        self.host._stop()
        self.useFixture(fixtures.EnvironmentVariable(
            'CONSUMER_HOST_SCHEMA', model))
        self.host = self.useFixture(test_consumer_e2e.HostProcess(
            self.host_db.url, self.transport, self.stream, self.topic))

    def alembic(self, operation):
        """Run one alembic operation on the host database."""
        with self.host_db.engine.begin() as conn:
            operation(operations.Operations(
                alembic_migration.MigrationContext.configure(conn)))

    def host_rows(self):
        reflected = sa.MetaData()
        reflected.reflect(self.host_db.engine,
                          only=list(consumer_host.TABLES))
        out = {}
        with self.host_db.engine.connect() as conn:
            for table in reflected.sorted_tables:
                pk = [c.name for c in table.primary_key.columns]
                out[table.name] = {
                    tuple(r._mapping[c] for c in pk): dict(r._mapping)
                    for r in conn.execute(sa.select(table))}
        return out

    def assertVersions(self):
        self.conf.set_override('tables', list(consumer_host.TABLES),
                               'oslo_publish')
        published = schema.resolve_tables(self.conf,
                                          engine=self.host_db.engine)
        store = state_mod.StateStore.from_url(self.state_db.url)
        try:
            stored = store.schema_versions(self.stream, 'oslo_publish',
                                           'snapshot')
        finally:
            store.close()
        self.assertEqual({n: t.version for n, t in published.items()},
                         stored)
        return stored

    def assertInStep(self, consumer):
        self.settle()
        self.assertConverges(consumer)
        self.wait_caught_up(consumer)
        return self.assertVersions()

    def test_column_added_then_dropped_while_writing(self):
        """Added and dropped columns reach the consumer; no delta is lost."""
        self.host.command('preload', rows=100)
        consumer = service.Consumer(self.conf)
        watch = _Watch()
        consumer.register_migration(watch)
        if self.IN_PLACE:
            consumer.register_migration(migrations.ColumnDefaults(
                {'items': {'zone': 'nova'}}))
        # Sees what the steps before it left unresolved.
        unresolved = _Watch()
        consumer.register_migration(unresolved)
        consumer.start()
        self.addCleanup(self._stop_consumer, consumer)
        self.assertTrue(consumer.wait_synced(60))
        before = self.assertInStep(consumer)

        # Expand while the old code writes, then restart with new code.
        self.host.command('write', tx=120, writers=2, seed=21)
        self.alembic(lambda op: op.add_column('items', sa.Column(
            'zone', sa.String(16), nullable=False, server_default='nova')))
        # In step before the restart: with log capture the reader
        # publishes the new version as soon as it reads the DDL, and a
        # migration snapshot cut off by the restart would be retried
        # (and counted twice).
        self.settle()
        self.wait_caught_up(consumer)
        self.restart_host('2')
        self.host.command('write', tx=120, writers=2, seed=22)
        expanded = self.assertInStep(consumer)
        self.assertNotEqual(before['items'], expanded['items'])
        self.assertEqual(before['pairs'], expanded['pairs'])
        self.assertIn('zone', consumer.view().get('items', (1,)))

        # Contract: new code first, the column goes while it writes.
        self.restart_host('3')
        self.host.command('write', tx=120, writers=2, seed=23)
        self.alembic(lambda op: op.drop_column('items', 'seen'))
        contracted = self.assertInStep(consumer)
        self.assertNotEqual(expanded['items'], contracted['items'])
        self.assertNotIn('seen', consumer.view().get('items', (1,)))

        self.assertEqual(2, self.resyncs(consumer, 'schema'))
        # Both by the migration steps, not by a full resync.
        self.assertEqual(2, consumer.status()[0]['migrations'])
        self.assertEqual(
            [('items', before['items'], expanded['items']),
             ('items', expanded['items'], contracted['items'])], watch.seen)
        self.assertEqual([] if self.IN_PLACE else watch.seen,
                         unresolved.seen)
        for cause in ('gap', 'heartbeat', 'inactivity'):
            self.assertEqual(0, self.resyncs(consumer, cause), cause)
        base.wait_for(
            lambda: not consumer.status()[0]['pending_invalidations'], 30,
            message='invalidated tables not re-read')
        if not self.DDL_INVALIDATES:
            self.assertEqual(0, consumer.status()[0].get(
                'invalidated:items:schema_change', 0))


class TestSchemaChangePostgreSQL(_SchemaChange, base.TestCase):
    HOST_BACKEND = 'postgresql'
    STATE_BACKEND = 'mysql'


class TestSchemaChangeMariaDB(_SchemaChange, base.TestCase):
    HOST_BACKEND = 'mysql'
    STATE_BACKEND = 'postgresql'


class TestSchemaChangeInPlaceMariaDB(_SchemaChange, base.TestCase):
    HOST_BACKEND = 'mysql'
    STATE_BACKEND = 'sqlite'
    IN_PLACE = True


class TestSchemaChangeLogicalPostgreSQL(test_logical_e2e._LogicalHost,
                                        _SchemaChange, base.TestCase):
    STATE_BACKEND = 'sqlite'


class TestSchemaChangeLogicalMariaDB(test_binlog_e2e._BinlogHost,
                                     _SchemaChange, base.TestCase):
    STATE_BACKEND = 'sqlite'
    DDL_INVALIDATES = True
