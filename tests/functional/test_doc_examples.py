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
        """The guide's service, WSGI and placement-style examples run as
        written and a consumer's mirror equals their host tables.
        """
        overrides = {('DEFAULT', 'transport_url'): self.tf.url,
                     ('DEFAULT', 'control_exchange'): self.tf.exchange,
                     ('database', 'connection'): self.db.url,
                     ('placement_database', 'connection'): self.db.url,
                     ('oslo_publish', 'topics'): self.tf.topic,
                     ('oslo_publish', 'signing_key'): KEY}
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
        """Each ini example parses, and every option it sets exists and
        accepts the value shown.
        """
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
        """No bare ``::`` block is anything but Python, and every Python
        block compiles.
        """
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
