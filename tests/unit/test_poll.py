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

"""Tests of the poll driver: baseline of hashes -> deltas only for changes.

The source is :class:`ListSource`, a complete in-memory poll source
plugin (the interface is one method); SQLSource is tested on every
database in tests/functional/test_poll_sql.py.
"""

import os

from consumer import cache as cache_mod
from consumer.drivers import poll
from consumer import handlers
from consumer import metrics as metrics_mod
from consumer import state as state_mod
from tests import base


class ListSource(poll.PollSource):
    """A poll source over dicts: ``tables[name] = {key: row}``."""

    def __init__(self, conf=None):
        super().__init__(conf)
        self.tables = {'hosts': {}}
        self.calls = 0

    def get_all(self):
        self.calls += 1
        return {name: poll.PolledTable(('id',), 'v1', list(rows.values()))
                for name, rows in self.tables.items()}


class Recorder(handlers.ChangeHandler):

    def __init__(self):
        super().__init__()
        self.events = []

    def on_add(self, table, key, row):
        self.events.append(('add', key))

    def on_update(self, table, key, before, after):
        self.events.append(('update', key))

    def on_delete(self, table, key, row):
        self.events.append(('delete', key))


class TestPollDriver(base.TestCase):

    def setUp(self):
        super().setUp()
        self.conf.set_override('driver', 'poll', 'consumer')
        self.conf.set_override('stream', 'hosts_poll', 'consumer_poll')
        self.conf.set_override('resync_backoff_min', 0.0, 'consumer')
        self.conf.set_override('resync_backoff_max', 0.0, 'consumer')
        self.conf.set_override('resync_interval', 0.0, 'consumer')
        self.metrics = metrics_mod.ConsumerMetrics()
        url = 'sqlite:///%s' % os.path.join(self.tmpdir, 'state.sqlite')
        self.state = state_mod.StateStore.from_url(url)
        self.state.upgrade()
        self.addCleanup(self.state.close)
        self.source = ListSource()
        for i in range(1, 4):
            self.source.tables['hosts'][i] = {'id': i, 'name': 'h%d' % i,
                                              'up': True}

    def make(self):
        self.cache = cache_mod.Cache()
        self.dispatcher = handlers.Dispatcher(self.metrics, 100)
        self.addCleanup(self.dispatcher.stop)
        self.recorder = Recorder()
        driver = poll.PollDriver(self.conf, self.cache, self.state,
                                 self.dispatcher, self.metrics,
                                 source=self.source)
        driver.add_handler('recorder', self.recorder)
        driver.reconciler.start(run_thread=False)
        self.addCleanup(driver.reconciler.stop)
        driver.reconciler.poll()
        return driver

    def rows(self):
        return {k[0]: dict(v) for k, v in
                self.cache.view().rows('hosts').items()}

    def test_initial_sync_takes_everything(self):
        """The first sync mirrors the source completely."""
        driver = self.make()
        self.assertTrue(driver.wait_synced(0))
        self.assertEqual(self.source.tables['hosts'], self.rows())

    def test_only_changed_entities_become_deltas(self):
        """Added, changed and vanished entities, and nothing else."""
        driver = self.make()
        self.assertTrue(self.dispatcher.wait_idle(5))
        self.recorder.events.clear()
        hosts = self.source.tables['hosts']
        hosts[4] = {'id': 4, 'name': 'h4', 'up': True}
        hosts[2] = dict(hosts[2], up=False)
        del hosts[3]
        self.assertEqual(3, driver.poll_once())
        self.assertEqual(self.source.tables['hosts'], self.rows())
        self.assertTrue(self.dispatcher.wait_idle(5))
        self.assertEqual(sorted([('add', (4,)), ('update', (2,)),
                                 ('delete', (3,))]),
                         sorted(self.recorder.events))
        self.assertEqual(1, driver.reconciler.applied)
        self.assertEqual(0, driver.poll_once())
        self.assertEqual(1, driver.reconciler.applied)

    def test_source_rows_changed_in_place_do_not_reach_the_cache(self):
        """The cache keeps copies of the polled rows, not the source's."""
        driver = self.make()
        hosts = self.source.tables['hosts']
        hosts[4] = {'id': 4, 'name': 'h4', 'up': True}
        hosts[2] = dict(hosts[2], up=False)
        self.assertEqual(2, driver.poll_once())
        hosts[4]['name'] = 'changed'
        hosts[2]['name'] = 'changed'
        self.assertEqual('h4', self.rows()[4]['name'])
        self.assertEqual('h2', self.rows()[2]['name'])

    def test_polled_deltas_are_persisted_and_resumed(self):
        """A restarted poll driver resumes and diffs against stored rows."""
        driver = self.make()
        self.source.tables['hosts'][5] = {'id': 5, 'name': 'h5', 'up': True}
        driver.poll_once()
        driver.reconciler.stop()
        stored = {k[0]: r for k, r in self.state.load_rows('hosts_poll',
                                                           'hosts')}
        self.assertEqual(self.source.tables['hosts'], stored)
        calls = self.source.calls
        again = self.make()
        self.assertEqual(calls, self.source.calls)
        self.assertEqual(self.source.tables['hosts'], self.rows())
        self.source.tables['hosts'][1] = dict(
            self.source.tables['hosts'][1], name='renamed')
        self.assertEqual(1, again.poll_once())
        self.assertEqual(2, again.reconciler.applied)
        self.assertEqual(self.source.tables['hosts'], self.rows())
