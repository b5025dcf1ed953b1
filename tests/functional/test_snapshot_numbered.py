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

"""Numbered snapshot pages (API 1.1): several requests in flight.

What must hold: pages requested by number, several at once and answered
in any order, give exactly the rows of the snapshot in key order (also
with writers committing meanwhile: the convergence test of
``test_snapshot`` runs through the consumer's pipelined reader); pages
past the end are empty, also once the snapshot was fully read; an index
too far ahead is refused; and a request without ``index`` is served as
before.
"""

from concurrent import futures

from oslo_config import cfg

from consumer import options as consumer_options
from consumer import source
from oslo_publish import exceptions
from oslo_publish import wire
from tests import base
from tests.functional import test_snapshot


class _NumberedTests(test_snapshot.SnapshotTestMixin):

    def consumer_source(self):
        conf = cfg.ConfigOpts()
        consumer_options.register_opts(conf)
        conf([], project='oslo_publish_test', default_config_files=[])
        conf.set_override('signing_key',
                          self.conf.oslo_publish.signing_key, 'consumer')
        return source.RPCSnapshotSource(conf, self.stream,
                                        transport=self.rpc_transport)

    def read_snapshot(self, tables=None):
        """Read through the consumer's reader; (watermark, rows, None)."""
        with self.consumer_source().open(tables) as snap:
            self.assertEqual(source.PAGE_WINDOW, snap._window)
            self.assertEqual(wire.LAYOUT_COLUMNS, snap._layout)
            rows = {}
            for name in snap.tables:
                keys = []
                rows[name] = {}
                for key, row in snap.rows(name):
                    keys.append(key)
                    rows[name][key] = row
                self.assertEqual(sorted(keys), keys)
            return snap.watermark, rows, None

    def numbered(self, ident, table, index, server, layout=None):
        # As a client of API 1.1 asks (1.2 for the columns layout).
        if layout is None:
            client = self.client.prepare(
                server=server, version=wire.SNAPSHOT_API_NUMBERED_VERSION)
            return client.call({}, 'snapshot_page', snapshot_id=ident,
                               table=table, index=index)
        client = self.client.prepare(
            server=server, version=wire.SNAPSHOT_API_COLUMNS_VERSION)
        return client.call({}, 'snapshot_page', snapshot_id=ident,
                           table=table, index=index, layout=layout)

    def test_columns_layout_pages_hold_the_same_rows(self):
        """API 1.2 pages (columns once, rows as lists) equal row pages."""
        server = self.start_server()
        self.writer.transaction([self.writer.insert_item(i, 'n%d' % i)
                                 for i in range(1, 16)])
        by_layout = {}
        for layout in (None, wire.LAYOUT_COLUMNS):
            opened = self.call('snapshot_open', tables=['items'])
            self.assertEqual([wire.LAYOUT_COLUMNS], opened['layouts'])
            ident = opened['snapshot_id']
            pages = [self.numbered(ident, 'items', index, server.name,
                                   layout) for index in range(4)]
            by_layout[layout] = pages
            for page in pages:
                wire.check_signature(page, self.conf.oslo_publish.signing_key)
        for page in by_layout[None]:
            self.assertNotIn('layout', page)
            self.assertNotIn('columns', page)
        rows = [row for page in by_layout[None] for row in page['rows']]
        self.assertEqual(15, len(rows))
        listed = []
        for page in by_layout[wire.LAYOUT_COLUMNS]:
            self.assertEqual(wire.LAYOUT_COLUMNS, page['layout'])
            self.assertEqual(sorted(rows[0]), sorted(page['columns']))
            listed.extend(dict(zip(page['columns'], values))
                          for values in page['rows'])
        self.assertEqual(rows, listed)
        for pages in by_layout.values():
            self.assertEqual([7, 7, 1, 0], [len(p['rows']) for p in pages])
            self.assertIsNone(pages[2]['next'])
            self.assertIsNone(pages[3]['next'])
        self.assertEqual(wire.LAYOUT_COLUMNS,
                         by_layout[wire.LAYOUT_COLUMNS][3]['layout'])

    def test_unknown_layout_is_refused(self):
        """A layout the host does not know is a bad request."""
        server = self.start_server()
        opened = self.call('snapshot_open', tables=['items'])
        exc = self.assertRaises(exceptions.SnapshotError, self.numbered,
                                opened['snapshot_id'], 'items', 0,
                                server.name, 'rows-v9')
        self.assertIn('unknown page layout', str(exc))
        self.call('snapshot_close', snapshot_id=opened['snapshot_id'])

    def test_reader_of_a_host_without_layouts_asks_for_row_objects(self):
        """A host of API 1.1 (no ``layouts``) gets requests of 1.1."""
        self.start_server()
        self.writer.transaction([self.writer.insert_item(i, 'n%d' % i)
                                 for i in range(1, 16)])
        src = self.consumer_source()
        caller, asked = src._caller, []

        def older_host(method, **kwargs):
            asked.append(kwargs.get('layout'))
            answer = caller(method, **kwargs)
            if method == 'snapshot_open':
                answer.pop('layouts')
                answer.pop('signature', None)
                answer = wire.sign(answer,
                                   self.conf.oslo_publish.signing_key)
            return answer
        src._caller = older_host
        with src.open(['items']) as snap:
            self.assertIsNone(snap._layout)
            rows = dict(snap.rows('items'))
        self.assertEqual(self.db_rows()['items'], rows)
        self.assertEqual({None}, set(asked))

    def test_concurrent_numbered_pages_give_every_row_once(self):
        """Pages asked for all at once come back complete and in order."""
        server = self.start_server()
        self.writer.transaction([self.writer.insert_item(i, 'n%d' % i)
                                 for i in range(1, 31)])
        opened = self.call('snapshot_open', tables=['items'])
        self.assertEqual(server.name, opened['server'])
        self.assertEqual(wire.PAGE_WINDOW, opened['page_window'])
        ident = opened['snapshot_id']
        # 30 rows, pages of 7: pages 0..4 (the last holds 2 rows), then
        # empty pages; all asked for at once, the later ones first.
        with futures.ThreadPoolExecutor(wire.PAGE_WINDOW) as pool:
            asked = {index: pool.submit(self.numbered, ident, 'items',
                                        index, server.name)
                     for index in reversed(range(wire.PAGE_WINDOW))}
            pages = {index: f.result() for index, f in asked.items()}
        for index in range(wire.PAGE_WINDOW, 7):
            pages[index] = self.numbered(ident, 'items', index, server.name)
        ids = [wire.decode_row(row)['id']
               for index in sorted(pages) for row in pages[index]['rows']]
        self.assertEqual(list(range(1, 31)), ids)
        self.assertEqual([7, 7, 7, 7, 2, 0, 0],
                         [len(pages[i]['rows']) for i in sorted(pages)])
        self.assertIsNone(pages[4]['next'])
        self.assertIsNotNone(pages[3]['next'])
        # Fully read: closed on the host, later pages still empty.
        self.assertEqual(0, server.open_count())
        late = self.numbered(ident, 'items', 9, server.name)
        self.assertEqual([], late['rows'])
        self.assertIsNone(late['next'])

    def test_index_too_far_ahead_is_refused(self):
        """An index beyond the window is a bad request, nothing waits."""
        server = self.start_server()
        self.writer.transaction([self.writer.insert_item(i, 'n%d' % i)
                                 for i in range(1, 31)])
        opened = self.call('snapshot_open', tables=['items'])
        ident = opened['snapshot_id']
        exc = self.assertRaises(exceptions.SnapshotError, self.numbered,
                                ident, 'items', wire.PAGE_WINDOW + 1,
                                server.name)
        self.assertIn('not next in line', str(exc))
        # The snapshot is still good: read by number from the start.
        first = self.numbered(ident, 'items', 0, server.name)
        self.assertEqual(7, len(first['rows']))
        self.call('snapshot_close', snapshot_id=ident)

    def test_keyed_pages_still_served(self):
        """A request with ``after`` (API 1.0) reads as before."""
        self.start_server()
        self.writer.transaction([self.writer.insert_item(i, 'n%d' % i)
                                 for i in range(1, 16)])
        _watermark, rows, pages = test_snapshot.SnapshotTestMixin \
            .read_snapshot(self, ['items'])
        self.assertEqual(self.db_rows()['items'], rows['items'])
        self.assertEqual(3, len(pages))

    def test_pipelined_reader_converges_with_writers(self):
        """Snapshot (read pipelined) at N plus deltas > N equals tables."""
        self.relay.start()
        self.addCleanup(self.relay.stop)
        self.start_server()
        test_snapshot._SnapshotTests._converge(self, self.writer,
                                               self.relay.wake)


class TestNumberedPagesSQLite(_NumberedTests, base.BackendTestCase):
    BACKEND = 'sqlite'


class TestNumberedPagesPostgreSQL(_NumberedTests, base.BackendTestCase):
    BACKEND = 'postgresql'

    def test_columns_pages_forwarded_to_the_owner(self):
        """A columns request reaching another server is forwarded (1.2)."""
        first = self.start_server()
        second = self.start_server()
        self.writer.transaction([self.writer.insert_item(i, 'n%d' % i)
                                 for i in range(1, 10)])
        opened = self.call('snapshot_open', tables=['items'])
        other = second.name if opened['server'] == first.name \
            else first.name
        ident = opened['snapshot_id']
        pages = [self.numbered(ident, 'items', index, other,
                               wire.LAYOUT_COLUMNS) for index in range(2)]
        ids = [dict(zip(page['columns'], values))['id']
               for page in pages for values in page['rows']]
        self.assertEqual(list(range(1, 10)), ids)
        self.assertEqual([wire.LAYOUT_COLUMNS] * 2,
                         [page['layout'] for page in pages])
        self.assertEqual(0, first.open_count() + second.open_count())


class TestNumberedPagesMySQL(_NumberedTests, base.BackendTestCase):
    BACKEND = 'mysql'
