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

"""Tests of the snapshot RPC client against the wire contract."""

import datetime
import threading

from consumer import exceptions
from consumer import source
from oslo_publish import wire
from tests import base
from tests.unit import fakehost


class TestRPCSnapshotSource(base.TestCase):

    def setUp(self):
        super().setUp()
        self.host = fakehost.FakeHost('nova', key='k1')
        self.host.add_table('instances', columns=(('id', 'INTEGER'),
                                                  ('at', 'DATETIME')))
        for i in range(1, 8):
            self.host.change('instances', wire.INSERT, {
                'id': i, 'at': datetime.datetime(2026, 1, i)})
        self.conf.set_override('signing_key', 'k1', 'consumer')

    def source(self):
        return source.RPCSnapshotSource(self.conf, 'nova',
                                        caller=self.host.caller)

    def test_pages_are_read_and_decoded(self):
        """Every page is read, values decoded, keys built from the pk."""
        with self.source().open() as snap:
            self.assertEqual(0, snap.watermark)
            rows = dict(snap.rows('instances'))
        self.assertEqual(7, len(rows))
        self.assertEqual(datetime.datetime(2026, 1, 3), rows[(3,)]['at'])
        self.assertEqual({}, self.host._open)

    def test_plain_page_rows_are_taken_as_they_are(self):
        """A page of text/integers/booleans/nulls needs no decoding."""
        encoded = [{'id': 1, 'name': 'a', 'ok': True, 'x': None},
                   {'id': 2, 'name': 'b', 'ok': False, 'x': None}]
        got = source.decode_page('t', ['id'], encoded)
        self.assertEqual([((1,), encoded[0]), ((2,), encoded[1])], got)

    def test_tagged_values_are_decoded(self):
        """A page with a tagged value is decoded row by row."""
        at = datetime.datetime(2026, 1, 2, 3, 4, 5)
        encoded = [{'id': 1, 'at': wire.encode_value(at)},
                   {'id': 2, 'at': None}]
        got = source.decode_page('t', ['id'], encoded)
        self.assertEqual([((1,), {'id': 1, 'at': at}),
                          ((2,), {'id': 2, 'at': None})], got)

    def test_composite_keys_in_pk_order(self):
        """Key tuples follow the primary-key column order."""
        encoded = [{'a': 1, 'b': 'x', 'v': 0}, {'a': 1, 'b': 'y', 'v': 1}]
        got = source.decode_page('t', ['b', 'a'], encoded)
        self.assertEqual([('x', 1), ('y', 1)], [k for k, _r in got])

    def test_bad_pages_are_refused(self):
        """Missing key column, non-object row, untagged object: refused."""
        for encoded in ([{'name': 'a'}], [['id', 1]],
                        [{'id': 1, 'x': {'a': 1}}],
                        [{'id': 1, 'f': 1.5}, {1: 2}]):
            self.assertRaises(exceptions.SnapshotFailed,
                              source.decode_page, 't', ['id'], encoded)

    def test_collector_paused_only_while_reading(self):
        """The collector is paused during the read, running afterwards."""
        import gc

        from consumer import gc_pause
        seen = []
        with self.source().open() as snap:
            for _item in snap.rows('instances'):
                seen.append((gc_pause.depth(), gc.isenabled()))
        self.assertEqual([(1, False)] * 7, seen)
        self.assertEqual(0, gc_pause.depth())
        self.assertTrue(gc.isenabled())

    def test_wrong_signature_fails_and_closes(self):
        """A response signed with another key is refused."""
        self.conf.set_override('signing_key', 'other', 'consumer')
        self.assertRaises(exceptions.SnapshotFailed, self.source().open)

    def test_wrong_key_opens_nothing_on_the_host(self):
        """A consumer with another key is refused before the host opens."""
        self.conf.set_override('signing_key', 'other', 'consumer')
        self.assertRaises(exceptions.SnapshotFailed, self.source().open)
        self.assertEqual(0, self.host.snapshots_opened)
        self.assertEqual({}, self.host._open)

    def test_rejected_open_answer_closes_the_snapshot(self):
        """An open answer the consumer rejects is closed on the host."""
        def caller(method, **kwargs):
            response = self.host.caller(method, **kwargs)
            if method == 'snapshot_open':
                response = dict(response, stream='another')
            return response
        src = source.RPCSnapshotSource(self.conf, 'nova', caller=caller)
        self.assertRaises(exceptions.SnapshotFailed, src.open)
        self.assertEqual(1, self.host.snapshots_opened)
        self.assertEqual({}, self.host._open)

    def test_open_carries_the_deadline_of_its_call(self):
        """The signed auth says when the consumer stops waiting."""
        self.conf.set_override('snapshot_timeout', 7.0, 'consumer')
        sent = []

        def caller(method, **kwargs):
            sent.append(kwargs.get('auth'))
            return self.host.caller(method, **kwargs)
        src = source.RPCSnapshotSource(self.conf, 'nova', caller=caller)
        src.open().close()
        auth = sent[0]
        self.assertEqual(7.0, auth['deadline'] - auth['time'])
        wire.check_signature(auth, 'k1')

    def test_bad_page_fails_and_closes_the_snapshot(self):
        """A page with an undecodable value fails; the host is released."""
        original = self.host.snapshot_page

        def page(ctxt, snapshot_id, table, after):
            result = dict(original(ctxt, snapshot_id, table, after))
            result['rows'] = [{'id': 1, 'at': {'__t': 'date', 'v': 'x'}}]
            return wire.sign(result, 'k1')

        self.host.snapshot_page = page
        snap = self.source().open()
        with snap:
            self.assertRaises(exceptions.SnapshotFailed, list,
                              snap.rows('instances'))
        self.assertEqual({}, self.host._open)

    def test_rpc_errors_become_snapshot_failed(self):
        """Any error of the transport is a retryable SnapshotFailed."""
        self.host.fail_snapshots = 1
        error = self.assertRaises(exceptions.SnapshotFailed,
                                  self.source().open)
        self.assertIn('snapshot refused', str(error))

    def test_other_stream_is_refused(self):
        """A response about another stream is refused."""
        self.host.stream = 'glance'
        self.assertRaises(exceptions.SnapshotFailed, self.source().open)


class _NumberedHost(object):
    """A host of API 1.1 answering numbered pages out of order.

    Page ``i`` of ``pages`` pages holds rows ``i * 10 + 1 ..``; the
    first pages are held back until page ``window - 1`` was asked for, so
    the answers arrive out of order. Records the most requests ever in
    flight.
    """

    def __init__(self, pages, fail_at=None, layouts=None):
        self.pages = pages
        self.fail_at = fail_at
        #: ``layouts`` of the open answer (None: a host of API 1.1).
        self.layouts = layouts
        #: The ``layout`` of every page request.
        self.layouts_asked = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most = 0
        self.asked = []
        self.later_asked = threading.Event()
        self.closed = []

    def caller(self, method, **kwargs):
        if method == 'snapshot_open':
            opened = {'format': wire.FORMAT, 'stream': 'nova',
                      'snapshot_id': 's1', 'watermark': 5, 'epoch': 'e',
                      'server': 'owner', 'page_window': 4,
                      'tables': {'t': {'pk': ['id'], 'version': 'v'}}}
            if self.layouts is not None:
                opened['layouts'] = self.layouts
            return opened
        if method == 'snapshot_close':
            self.closed.append(kwargs['snapshot_id'])
            return {'closed': True}
        self.assertions(kwargs)
        index = kwargs['index']
        layout = kwargs.get('layout')
        self.layouts_asked.append(layout)
        with self.lock:
            self.asked.append(index)
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        try:
            if index < source.PAGE_WINDOW - 1:
                self.later_asked.wait(10)
            elif index == source.PAGE_WINDOW - 1:
                self.later_asked.set()
            if index == self.fail_at:
                raise RuntimeError('page %d lost' % index)
            last = index >= self.pages - 1
            rows = [] if index >= self.pages else [
                {'id': index * 10 + n, 'v': 'r%d' % n} for n in range(1, 11)]
            page = {'format': wire.FORMAT, 'stream': 'nova',
                    'snapshot_id': 's1', 'table': 't', 'rows': rows,
                    'next': None if last else '[%d]' % (index * 10 + 10)}
            if layout == wire.LAYOUT_COLUMNS:
                page.update(layout=layout, columns=['v', 'id'],
                            rows=[[r['v'], r['id']] for r in rows])
            return page
        finally:
            with self.lock:
                self.in_flight -= 1

    @staticmethod
    def assertions(kwargs):
        if 'after' in kwargs or '_server' in kwargs:
            raise AssertionError('unexpected %r' % kwargs)


class TestNumberedPages(base.TestCase):

    def test_rows_come_in_page_order_with_requests_in_flight(self):
        """Out-of-order answers give the rows in order; window bounded."""
        host = _NumberedHost(pages=7)
        src = source.RPCSnapshotSource(self.conf, 'nova', caller=host.caller)
        with src.open() as snap:
            keys = [key for key, _row in snap.rows('t')]
        self.assertEqual([(i * 10 + n,) for i in range(7)
                          for n in range(1, 11)], keys)
        self.assertEqual(source.PAGE_WINDOW, host.most)
        self.assertEqual(list(range(7)), sorted(set(host.asked))[:7])
        self.assertLessEqual(max(host.asked), 6 + source.PAGE_WINDOW - 1)
        self.assertEqual(['s1'], host.closed)

    def test_a_lost_page_fails_the_snapshot(self):
        """One failed numbered request fails the read; it is closed."""
        host = _NumberedHost(pages=7, fail_at=4)
        src = source.RPCSnapshotSource(self.conf, 'nova', caller=host.caller)
        with src.open() as snap:
            error = self.assertRaises(exceptions.SnapshotFailed, list,
                                      snap.rows('t'))
        self.assertIn('page 4 lost', str(error))
        self.assertEqual(['s1'], host.closed)

    def test_columns_layout_when_the_host_offers_it(self):
        """A host of API 1.2 is asked for columns; the rows are the same."""
        expected = [((i * 10 + n,), {'id': i * 10 + n, 'v': 'r%d' % n})
                    for i in range(5) for n in range(1, 11)]
        for layouts, asked in (([wire.LAYOUT_COLUMNS], wire.LAYOUT_COLUMNS),
                               (None, None), (['other'], None)):
            host = _NumberedHost(pages=5, layouts=layouts)
            src = source.RPCSnapshotSource(self.conf, 'nova',
                                           caller=host.caller)
            with src.open() as snap:
                got = list(snap.rows('t'))
            self.assertEqual(expected, got)
            self.assertEqual({asked}, set(host.layouts_asked), layouts)

    def test_older_host_is_read_by_key(self):
        """Without page_window in the open answer, pages go by key."""
        host = fakehost.FakeHost('nova')
        host.add_table('instances', columns=(('id', 'INTEGER'),))
        for i in range(1, 8):
            host.change('instances', wire.INSERT, {'id': i})
        src = source.RPCSnapshotSource(self.conf, 'nova', caller=host.caller)
        with src.open() as snap:
            self.assertEqual(0, snap._window)
            keys = [key for key, _row in snap.rows('instances')]
        self.assertEqual([(i,) for i in range(1, 8)], keys)


class TestDecodeLayout(base.TestCase):
    """Pages in the columns layout are checked before they are used."""

    def page(self, **kwargs):
        page = {'layout': wire.LAYOUT_COLUMNS, 'columns': ['id', 'v'],
                'rows': [[1, 'a'], [2, {'__t': 'date', 'v': '2026-01-02'}]]}
        page.update(kwargs)
        return page

    def test_rows_are_decoded(self):
        self.assertEqual(
            [((1,), {'id': 1, 'v': 'a'}),
             ((2,), {'id': 2, 'v': datetime.date(2026, 1, 2)})],
            source.decode_layout('t', ['id'], self.page()))

    def test_malformed_pages_are_refused(self):
        for bad in (self.page(columns=['id', 'id']),
                    self.page(columns='id,v'),
                    self.page(columns=['id', 3]),
                    self.page(rows=[[1, 'a', 'extra']]),
                    self.page(rows=[{'id': 1, 'v': 'a'}]),
                    self.page(rows=[[1]]),
                    self.page(columns=['v', 'w'], rows=[[1, 2]]),
                    self.page(layout='rows-v9')):
            self.assertRaises(exceptions.SnapshotFailed,
                              source.decode_layout, 't', ['id'], bad)
