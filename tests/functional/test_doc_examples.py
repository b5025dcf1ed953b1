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

"""Every code example of ``doc/source/*.rst`` runs as written.

See :mod:`tests.functional.doc_examples` for the conventions. Python
examples run on real PostgreSQL (or the SQLite file / ``fake://`` bus a
text names) and the real RabbitMQ; ini examples load with oslo.config and
name only options that exist.
"""

import importlib
import os
import subprocess
import sys

import fixtures
import kombu
from oslo_config import cfg
import sqlalchemy as sa

from consumer import listener
from consumer import service
from tests import base
from tests.functional import doc_examples

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
KEY = 'a-long-shared-secret'      # host.rst's myservice.conf


def _delete_queues(url, names, exchange):
    try:
        with kombu.Connection(url.replace('rabbit://', 'amqp://', 1)) as c:
            channel = c.channel()
            for name in names:
                channel.queue_delete(name)
            channel.exchange_delete(exchange)
    except Exception:  # noqa: best-effort broker cleanup
        pass


class _BusCase(base.TestCase):
    """A PostgreSQL host database and an exchange/topic of the test's."""

    def setUp(self):
        super().setUp()
        self.db = self.useFixture(base.DatabaseFixture('postgresql'))
        self.state_db = self.useFixture(base.DatabaseFixture('postgresql'))
        self.tf = self.useFixture(base.TransportFixture(self.conf))
        self.pool = base.unique_name('pool')
        self.addCleanup(_delete_queues, self.tf.url,
                        [self.pool, self.tf.topic + '.info'],
                        self.tf.exchange)

    def consumer_overrides(self):
        """What a consumer configuration file must say for this test."""
        return {('DEFAULT', 'transport_url'): self.tf.url,
                ('DEFAULT', 'control_exchange'): self.tf.exchange,
                ('consumer', 'topics'): self.tf.topic,
                ('consumer', 'pool'): self.pool,
                ('consumer_database', 'connection'): self.state_db.url}

    def start_consumer(self, streams, signing_key=None):
        """A consumer of ``streams`` configured on ``self.conf``."""
        listener.prepare_transport_conf(self.conf)
        for name, value in (('streams', streams),
                            ('topics', [self.tf.topic]),
                            ('pool', self.pool),
                            ('signing_key', signing_key),
                            ('snapshot_timeout', 30.0)):
            self.conf.set_override(name, value, 'consumer')
        self.conf.set_override('connection', self.state_db.url,
                               'consumer_database')
        consumer = service.Consumer(self.conf)
        consumer.start()
        self.addCleanup(consumer.stop)
        self.assertTrue(consumer.wait_synced(90), 'consumer never synced')
        return consumer

    @staticmethod
    def mirror(consumer, table):
        view = consumer.view()
        return {k: dict(r) for k, r in view.rows(table).items()}

    def host(self, table, drop=()):
        """``{key: row}`` of a host table, without the ``drop`` columns."""
        meta = sa.MetaData()
        t = sa.Table(table, meta, autoload_with=self.db.engine)
        rows = base.table_rows(self.db.engine, [t])[table]
        return {k: {c: v for c, v in r.items() if c not in drop}
                for k, r in rows.items()}


class TestHostGuide(_BusCase):
    """doc/source/host.rst."""

    def _before(self, block, ns):
        # The deployment steps the text says were done before the block:
        # "oslo-publish-manage ... upgrade" and the service's own schema.
        if 'wsgi.init_application()' in block.text:
            proc = subprocess.run(
                [os.path.join(os.path.dirname(sys.executable),
                              'oslo-publish-manage'),
                 '--config-file', 'myservice.conf', 'upgrade'],
                cwd=self.run_.dir, capture_output=True, text=True,
                env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)
            self.assertEqual(0, proc.returncode, proc.stderr)
            models = importlib.import_module('myservice.db.models')
            models.BASE.metadata.create_all(self.db.engine)
        if 'db.setup(conf)' in block.text:
            db = importlib.import_module('myplacement.db')
            db.BASE.metadata.create_all(self.db.engine)

    def _dispose(self):
        for name in ('myservice.db.api', 'myplacement.db'):
            module = sys.modules.get(name)
            for attr in ('main_context_manager',
                         'placement_context_manager'):
                manager = getattr(module, attr, None)
                if manager is not None:
                    manager.dispose_pool()

    def test_examples_run_and_the_mirror_equals_the_host(self):
        """The guide's examples run and a mirror equals their host tables."""
        overrides = {('DEFAULT', 'transport_url'): self.tf.url,
                     ('DEFAULT', 'control_exchange'): self.tf.exchange,
                     ('database', 'connection'): self.db.url,
                     ('placement_database', 'connection'): self.db.url,
                     ('oslo_publish', 'topics'): self.tf.topic,
                     ('oslo_publish', 'signing_key'): KEY,
                     # log.setup() in the example: to a file, not stdout.
                     ('DEFAULT', 'log_file'): os.path.join(self.tmpdir,
                                                           'host.log')}
        self.run_ = doc_examples.DocRun('host.rst', overrides)
        self.useFixture(self.run_)
        self.useFixture(fixtures.EnvironmentVariable(
            'MYSERVICE_CONFIG_FILE',
            os.path.join(self.run_.dir, 'myservice.conf')))
        self.addCleanup(self._dispose)
        ns = self.run_.run(self._before)
        self.addCleanup(ns['placement_handle'].stop)
        # Plain SQLAlchemy: one committed transaction, published.
        plain = sa.create_engine('sqlite:///%s/plain.sqlite'
                                 % self.run_.dir)
        self.addCleanup(plain.dispose)
        with plain.connect() as conn:
            self.assertEqual(1, conn.exec_driver_sql(
                'SELECT last_seq FROM oslo_publish_streams '
                "WHERE stream = 'plain'").scalar())
        consumer = self.start_consumer(['myservice', 'placement'], KEY)
        instances = self.host('instances', drop=('admin_password',))
        self.assertEqual({(1,), (2,)}, set(instances))
        self.assertEqual('compute-2', instances[(1,)]['host'])
        base.wait_for(lambda: self.mirror(consumer, 'instances')
                      == instances, 30, message='instances differ')
        providers = self.host('resource_providers')
        self.assertEqual(1, len(providers))
        base.wait_for(lambda: self.mirror(consumer, 'resource_providers')
                      == providers, 30, message='providers differ')


class TestIniExamples(base.TestCase):
    """Every ``ini`` block of every document."""

    def test_ini_blocks_load_and_name_existing_options(self):
        """Each ini example loads and sets only existing, valid options."""
        checked = 0
        for doc in doc_examples.documents():
            for block in doc_examples.blocks(doc):
                if block.lang != 'ini':
                    continue
                values = doc_examples.ini_values(block.text)
                groups = {s for s, _ in values
                          if s.endswith('_database') and
                          s != 'consumer_database'}
                conf = doc_examples.full_conf(groups)
                path = os.path.join(self.tmpdir, 'x.conf')
                with open(path, 'w') as f:
                    f.write(block.text)
                conf(['--config-file', path], project='doc',
                     default_config_files=[])
                where = '%s:%d' % (doc, block.line)
                for (section, name), value in values.items():
                    group = None if section == 'DEFAULT' else section
                    try:
                        opts = conf[group] if group else conf
                        getattr(opts, name)
                    except (cfg.NoSuchOptError,
                            cfg.NoSuchGroupError) as exc:
                        self.fail('%s: unknown option [%s] %s (%s)'
                                  % (where, section, name, exc))
                    except ValueError as exc:
                        self.fail('%s: bad value for [%s] %s: %s'
                                  % (where, section, name, exc))
                    checked += 1
                conf.reset()
        self.assertGreater(checked, 10)


class TestLiteralBlocks(base.TestCase):
    """The documents' literal blocks declare what they are."""

    def test_every_block_names_its_language(self):
        """Bare ``::`` blocks and Python blocks are all valid Python."""
        for doc in doc_examples.documents():
            for block in doc_examples.blocks(doc):
                where = '%s:%d' % (doc, block.line)
                if block.lang in (None, 'python'):
                    try:
                        compile(block.text, where, 'exec')
                    except SyntaxError as exc:
                        self.fail('%s is not Python (give it its language):'
                                  ' %s' % (where, exc))
                else:
                    self.assertIn(block.lang, doc_examples.INERT, where)


class _NovaHost(fixtures.Fixture):
    """A host publishing "nova's" ``instances`` on PostgreSQL.

    The stream gets a name of its own (the documents' ``nova``, renamed):
    the snapshot servers' RPC queues are named after the stream, not the
    exchange, so two tests serving ``nova`` at once would answer each
    other's snapshot requests.

    Rows 1..45: host ``compute-001``, ``compute-1`` or ``compute-2`` in
    turn, project ``p0``..``p2``.
    """

    HOSTS = ('compute-001', 'compute-1', 'compute-2')

    def __init__(self, db, tf):
        super().__init__()
        self.db, self.tf = db, tf
        self.stream = base.unique_name('nova')

    def _setUp(self):
        import oslo_messaging
        from oslo_messaging import transport as transport_mod

        import oslo_publish
        from oslo_publish import migration
        from oslo_publish import options
        meta = sa.MetaData()
        self.instances = sa.Table(
            'instances', meta,
            sa.Column('id', sa.Integer, primary_key=True),
            sa.Column('host', sa.String(64)),
            sa.Column('project_id', sa.String(36)))
        meta.create_all(self.db.engine)
        migration.upgrade(self.db.engine)
        conf = cfg.ConfigOpts()
        options.register_opts(conf)
        conf.register_opts(transport_mod._transport_opts)
        conf([], project='nova', default_config_files=[])
        conf.set_override('control_exchange', self.tf.exchange)
        for name, value in (('tables', ['instances']),
                            ('stream', self.stream),
                            ('topics', [self.tf.topic]),
                            ('heartbeat_interval', 0.5)):
            conf.set_override(name, value, 'oslo_publish')
        notify = oslo_messaging.get_notification_transport(
            conf, url=self.tf.url)
        self.addCleanup(notify.cleanup)
        rpc = oslo_messaging.get_rpc_transport(conf, url=self.tf.url)
        self.addCleanup(rpc.cleanup)
        maker = sa.orm.sessionmaker(bind=self.db.engine)
        handle = oslo_publish.install(conf, maker, metadata=meta,
                                      transport=notify, rpc_transport=rpc)
        self.addCleanup(handle.stop)
        with maker.begin() as session:
            session.execute(self.instances.insert(), [
                {'id': i, 'host': self.HOSTS[i % 3],
                 'project_id': 'p%d' % (i % 3)} for i in range(1, 46)])
        self.handle = handle

    def rows(self, host=None):
        rows = base.table_rows(self.db.engine, [self.instances])
        return {k: r for k, r in rows['instances'].items()
                if host is None or r['host'] == host}


class _ConsumerDocs(_BusCase):

    def setUp(self):
        super().setUp()
        self.nova = self.useFixture(_NovaHost(self.db, self.tf))
        self.started = []
        real = service.Consumer
        started = self.started

        class Recorded(real):
            def start(self):
                started.append(self)
                return super().start()
        self.useFixture(fixtures.MonkeyPatch('consumer.service.Consumer',
                                             Recorded))
        self.addCleanup(self._stop_all)

    def _stop_all(self):
        for consumer in self.started:
            if not consumer._stopping.is_set():
                consumer.stop()

    def consumer_conf(self, indexes=None):
        """``self.conf`` set up as a consumer of ``nova`` (not started)."""
        from consumer import options
        options.register_opts(self.conf)
        listener.prepare_transport_conf(self.conf)
        for name, value in (('streams', [self.nova.stream]),
                            ('topics', [self.tf.topic]),
                            ('pool', self.pool),
                            ('indexes', indexes or []),
                            ('snapshot_timeout', 30.0)):
            self.conf.set_override(name, value, 'consumer')
        self.conf.set_override('connection', self.state_db.url,
                               'consumer_database')
        return self.conf


class TestConsumerGuide(_ConsumerDocs):
    """doc/source/consumer.rst."""

    def test_example_syncs_and_indexes_by_host(self):
        """The guide's service syncs and indexes exactly the host's rows."""
        overrides = self.consumer_overrides()
        overrides[('consumer', 'streams')] = self.nova.stream
        run = doc_examples.DocRun('consumer.rst', overrides)
        self.useFixture(run)
        self.useFixture(fixtures.MonkeyPatch(
            'sys.argv', ['watcher', '--config-file',
                         os.path.join(run.dir, 'watcher.conf')]))
        ns = run.run()
        self.assertTrue(ns['mirror'].synced)
        expected = self.nova.rows('compute-001')
        self.assertEqual(15, len(expected))
        self.assertEqual([expected[k] for k in sorted(expected)],
                         [dict(r) for r in ns['on_host']])
        self.assertEqual(self.nova.rows(),
                         {k: dict(r) for k, r in
                          ns['view'].rows('instances').items()})


class TestConsumerCacheGuide(_ConsumerDocs):
    """doc/source/consumer_cache.rst on a synced ``consumer``.

    The consumer is configured with the page's ``indexes`` example.
    """

    def test_view_index_and_handler_examples(self):
        """The view, index and handler examples return the host's rows."""
        ini = [b for b in doc_examples.blocks('consumer_cache.rst')
               if b.lang == 'ini' and 'indexes' in b.text][0]
        indexes = doc_examples.ini_values(ini.text)[('consumer', 'indexes')]
        conf = self.consumer_conf(indexes.split(','))
        consumer = service.Consumer(conf)
        consumer.start()
        self.assertTrue(consumer.wait_synced(90), 'never synced')
        run = doc_examples.DocRun('consumer_cache.rst',
                                  namespace={'consumer': consumer})
        self.useFixture(run)
        ns = run.run()
        view = ns['view']
        self.assertEqual(45, view.count('instances'))
        self.assertEqual(dict(self.nova.rows()[(42,)]),
                         dict(view.get('instances', (42,))))
        expected = self.nova.rows('compute-1')
        self.assertEqual([expected[k] for k in sorted(expected)],
                         [dict(r) for r in ns['on_host']])
        self.assertEqual(sorted(expected), sorted(ns['keys']))
        handler = ns['HostLoad']()
        consumer.add_handler('host-load', handler)
        self.assertEqual(('instances',), handler.tables)


class TestConsumerFlowGuide(base.TestCase):
    """doc/source/consumer_flow.rst, with ``list_servers`` the source."""

    def test_poll_source_and_notification_handler_examples(self):
        """The poll source and notification handler examples work."""
        import types

        from oslo_publish import wire
        servers = [types.SimpleNamespace(id='s%d' % i, host='h%d' % i,
                                         status='ACTIVE') for i in range(3)]
        run = doc_examples.DocRun('consumer_flow.rst', namespace={
            'list_servers': lambda: servers})
        self.useFixture(run)
        ns = run.run()
        table = ns['NovaAPISource']().get_all()['servers']
        self.assertEqual(('id',), tuple(table.pk))
        self.assertEqual([{'id': 's0', 'host': 'h0', 'status': 'ACTIVE'},
                          {'id': 's1', 'host': 'h1', 'status': 'ACTIVE'},
                          {'id': 's2', 'host': 'h2', 'status': 'ACTIVE'}],
                         list(table.rows))
        payload = {'nova_object.data': {'uuid': 'u1', 'host': 'h1'}}
        changes = ns['InstanceHandler']().changes(
            'nova-compute:h1', 'compute.instance.create.end', payload)
        self.assertEqual([('native_instances', wire.INSERT, ('u1',),
                           {'uuid': 'u1', 'host': 'h1'})],
                         [(c.table, c.op, c.key, c.after) for c in changes])


class TestVersioningGuide(_ConsumerDocs):
    """doc/source/versioning.rst, with ``conf`` a consumer's configuration."""

    def test_upgrade_and_migration_examples(self):
        """The upgrade step registers; consumers with the steps sync."""
        from consumer import upgrades
        self.addCleanup(upgrades.unregister, '1.0')
        run = doc_examples.DocRun('versioning.rst', namespace={
            'conf': self.consumer_conf()})
        self.useFixture(run)
        ns = run.run()
        self.assertTrue(upgrades.registered('1.0'))
        self.assertEqual('2.0',
                         ns['_format_1_to_2']({'format': '1.0'})['format'])
        self.assertEqual(2, len(self.started))
        for consumer in self.started:
            self.assertTrue(consumer.wait_synced(90), 'never synced')
        self.assertTrue(issubclass(ns['FillZone'],
                                   ns['migrations'].MigrationStep))
