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

"""Snapshot sources: where the reconciler pulls whole tables from.

The interface is sized to its one caller, the reconciler::

    with source.open(tables) as snap:   # a Snapshot
        snap.watermark                  # every row has seq <= watermark
        snap.tables                     # {name: {"pk", "version", ...}}
        for key, row in snap.rows(name): ...

:class:`RPCSnapshotSource` is the client of the host's snapshot server
(the RPC contract of :mod:`oslo_publish.wire`). It checks every response
(format, stream, snapshot id and, when ``[consumer] signing_key`` is set,
the signature), decodes every value, and always closes the snapshot on
the host, also when reading fails and when the answer to
``snapshot_open`` itself is rejected. Every ``snapshot_open`` carries
the signed ``auth`` object of :mod:`oslo_publish.snapshot_auth` (the
host checks it before it opens anything) naming this process, so the
host's per-client limit applies, and the time this call stops waiting
(``deadline``), so the host does not open a snapshot for a request it
takes up after that. Any failure is raised as
:class:`consumer.exceptions.SnapshotFailed`; the reconciler retries with
backoff.
"""

import collections
from concurrent import futures
import itertools
import operator

from oslo_log import log

from consumer import bulk_rows
from consumer import exceptions
from consumer import gc_pause
from oslo_publish import snapshot_auth
from oslo_publish import wire

LOG = log.getLogger(__name__)

#: Numbered page requests in flight at most (when the host takes them,
#: see :data:`oslo_publish.wire.PAGE_WINDOW`).
PAGE_WINDOW = 3


class Snapshot(object):
    """An open, consistent snapshot of some tables.

    ``watermark`` (int): everything in the snapshot has ``seq <=
    watermark``. ``tables``: ``{name: {"pk": [...], "version": str}}``.
    """

    watermark = None
    tables = None
    #: True if the row dicts :meth:`rows` yields are fresh and referenced
    #: nowhere else: the cache may keep them as they are instead of
    #: copying each one (see ``owned`` of
    #: :meth:`consumer.cache.Cache.replace_table`).
    owned_rows = False

    def rows(self, table):
        """Yield ``(key tuple, row dict)`` of ``table`` in key order."""
        raise NotImplementedError

    def close(self):
        """Release the snapshot (idempotent)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class SnapshotSource(object):
    """Opens snapshots; see the module docstring."""

    def open(self, tables=None):
        """Open a snapshot of ``tables`` (None: every table).

        :raises consumer.exceptions.SnapshotFailed:
        """
        raise NotImplementedError


_PLAIN_TYPES = frozenset((str, int, bool, type(None)))


def _plain_page(encoded):
    """True if every row is a dict of str names to plain values."""
    if not set(map(type, encoded)).issubset((dict,)):
        return False
    if not set(map(type, itertools.chain.from_iterable(encoded))) \
            .issubset((str,)):
        return False
    values = itertools.chain.from_iterable(map(dict.values, encoded))
    return set(map(type, values)).issubset(_PLAIN_TYPES)


def _decode_columns(table, pk, page):
    """``[(key tuple, row dict)]`` of a page in the columns layout.

    The values of a page of plain values only are checked at C speed and
    taken as they are, the keys read from the lists; any other page is
    decoded row by row by :func:`decode_page`.

    :raises consumer.exceptions.SnapshotFailed: the column names are not
        distinct strings, a row is not a list of as many values, or a
        primary-key column is missing.
    """
    names = page.get('columns')
    encoded = page.get('rows')
    if type(names) is not list or not set(map(type, names)) <= {str} or \
            len(set(names)) != len(names):
        raise exceptions.SnapshotFailed(
            'bad column names in snapshot of %s' % table)
    if not set(map(type, encoded)) <= {list} or \
            not set(map(len, encoded)) <= {len(names)}:
        raise exceptions.SnapshotFailed(
            'bad row in snapshot of %s: not a list of %d values'
            % (table, len(names)))
    rows = list(map(dict, map(zip, itertools.repeat(names), encoded)))
    if not set(map(type, itertools.chain.from_iterable(encoded))) \
            .issubset(_PLAIN_TYPES):
        return decode_page(table, pk, rows)
    if not pk:
        return [((), row) for row in rows]
    try:
        places = [names.index(column) for column in pk]
    except ValueError:
        raise exceptions.SnapshotFailed(
            'snapshot row lacks a primary-key column') from None
    keys = zip(*[list(map(operator.itemgetter(place), encoded))
                 for place in places])
    return list(zip(keys, rows))


def decode_layout(table, pk, page):
    """``[(key tuple, row dict)]`` of a page answer, in either layout.

    A page in the columns layout (``"layout": "columns"``) is checked and
    turned into row objects; any other layout is refused.

    :raises consumer.exceptions.SnapshotFailed:
    """
    layout = page.get('layout')
    if layout is None:
        return decode_page(table, pk, page['rows'])
    if layout != wire.LAYOUT_COLUMNS:
        raise exceptions.SnapshotFailed(
            'unknown page layout %r in snapshot of %s' % (layout, table))
    return _decode_columns(table, pk, page)


def decode_page(table, pk, encoded):
    """``[(key tuple, row dict)]`` of a page's wire rows.

    A page of plain values only (text, integers, booleans, nulls: their
    own encoding) is checked at C speed and its rows taken as they are;
    any other page is decoded row by row with
    :func:`consumer.bulk_rows.decode_row`.

    :raises consumer.exceptions.SnapshotFailed: a malformed row, or one
        without a primary-key column.
    """
    if _plain_page(encoded):
        rows = encoded
    else:
        try:
            rows = [bulk_rows.decode_row(row) for row in encoded]
        except wire.WireError as exc:
            raise exceptions.SnapshotFailed(
                'bad row in snapshot of %s: %s'
                % (table, exc.reason)) from None
    if not pk:
        return [((), row) for row in rows]
    try:
        keys = zip(*[list(map(operator.itemgetter(c), rows)) for c in pk])
    except KeyError:
        raise exceptions.SnapshotFailed(
            'snapshot row lacks a primary-key column') from None
    return list(zip(keys, rows))


class _RPCSnapshot(Snapshot):

    # Every row dict is decoded from this snapshot's responses alone.
    owned_rows = True

    def __init__(self, source, response):
        self._source = source
        self._id = response['snapshot_id']
        self.watermark = response['watermark']
        self.tables = {name: {'pk': list(info['pk']),
                              'version': info.get('version'),
                              'columns': info.get('columns')}
                       for name, info in response['tables'].items()}
        self._closed = False
        # A host of API 1.1 takes numbered pages, sent to the server
        # owning the snapshot.
        window = response.get('page_window')
        self._server = response.get('server')
        self._window = 0
        if type(window) is int and window >= 2 and \
                isinstance(self._server, str):
            self._window = min(window, PAGE_WINDOW)
        # A host of API 1.2 serves numbered pages in the columns layout.
        layouts = response.get('layouts')
        self._layout = None
        if self._window and isinstance(layouts, list) and \
                wire.LAYOUT_COLUMNS in layouts:
            self._layout = wire.LAYOUT_COLUMNS

    def _page(self, table, after=None, index=None):
        if index is None:
            by = {'after': after}
        else:
            by = {'index': index, '_server': self._server}
            if self._layout is not None:
                by['layout'] = self._layout
        page = self._source._call('snapshot_page', snapshot_id=self._id,
                                  table=table, **by)
        if page.get('snapshot_id') != self._id or page.get('table') != table:
            raise exceptions.SnapshotFailed('page of another snapshot')
        if not isinstance(page.get('rows'), list):
            raise exceptions.SnapshotFailed('page without rows')
        return page

    def rows(self, table):
        # The collector is paused while the table is read: the decoded
        # rows all stay alive (see consumer.gc_pause).
        pk = self.tables[table]['pk']
        with gc_pause.paused():
            if self._window:
                yield from self._numbered_rows(table, pk, self._window)
            else:
                yield from self._keyed_rows(table, pk)

    def _numbered_rows(self, table, pk, window):
        # Pages 0 .. window-1 are requested at once, and page i + window
        # as soon as page i arrived: while this thread decodes a page,
        # the next ones are read, encoded and carried. The answers are
        # taken in page order, so the rows come in key order.
        pool = futures.ThreadPoolExecutor(window)
        try:
            pending = collections.deque(
                pool.submit(self._page, table, index=index)
                for index in range(window))
            index = window
            while True:
                page = pending.popleft().result()
                last = page.get('next') is None
                if not last:
                    pending.append(pool.submit(self._page, table,
                                               index=index))
                    index += 1
                yield from decode_layout(table, pk, page)
                if last:
                    return
        finally:
            # Requests past the last page are answered with empty pages
            # (and, after a failure, refused once the snapshot closes):
            # nothing waits for them here.
            pool.shutdown(wait=False, cancel_futures=True)

    def _keyed_rows(self, table, pk):
        # The next page is requested while this one is decoded (the host
        # reads and encodes it meanwhile); one request is in flight at a
        # time, so the host's limits still hold.
        with futures.ThreadPoolExecutor(1) as prefetch:
            pending = prefetch.submit(self._page, table, None)
            while True:
                page = pending.result()
                after = page.get('next')
                if after is not None:
                    pending = prefetch.submit(self._page, table, after)
                yield from decode_layout(table, pk, page)
                if after is None:
                    return

    def close(self):
        if self._closed:
            return
        self._closed = True
        try:
            self._source._caller('snapshot_close', snapshot_id=self._id)
        except Exception as exc:  # noqa: the host expires it anyway
            LOG.warning('Could not close snapshot %s of stream %s: %s',
                        self._id, self._source.stream, type(exc).__name__)


class RPCSnapshotSource(SnapshotSource):
    """Client of a stream's snapshot server over oslo.messaging RPC.

    :param conf: ConfigOpts with the consumer options.
    :param stream: the stream name.
    :param transport: an oslo.messaging RPC transport; or
    :param caller: ``caller(method, **kwargs) -> response``, for an
        in-process endpoint (tests).
    """

    def __init__(self, conf, stream, transport=None, caller=None):
        self.stream = stream
        self._key = conf.consumer.signing_key
        #: Seconds a call waits for its answer (the RPC timeout).
        self._timeout = conf.consumer.snapshot_timeout
        #: The client name this source's requests carry.
        self.client = snapshot_auth.client_name()
        #: Requests can be sent to a named server (RPC, not an
        #: in-process caller).
        self._routed = caller is None
        if caller is None:
            caller = self._rpc_caller(conf, transport)
        self._caller = caller

    def _rpc_caller(self, conf, transport):
        import oslo_messaging as messaging

        from oslo_publish import snapshot as host_snapshot
        host_snapshot.ensure_rpc_opts(conf)
        exchange = conf.consumer.exchanges.get(self.stream)
        target = messaging.Target(exchange=exchange,
                                  topic=wire.snapshot_topic(self.stream),
                                  namespace=wire.SNAPSHOT_NAMESPACE,
                                  version=wire.SNAPSHOT_API_BASE_VERSION)
        client = messaging.get_rpc_client(
            transport, target, timeout=conf.consumer.snapshot_timeout)

        def call(method, _server=None, **kwargs):
            if _server is None:
                return client.call({}, method, **kwargs)
            # Numbered pages: API 1.1 (1.2 in the columns layout), to the
            # snapshot's owner.
            version = wire.SNAPSHOT_API_NUMBERED_VERSION
            if kwargs.get('layout') is not None:
                version = wire.SNAPSHOT_API_COLUMNS_VERSION
            return client.prepare(server=_server, version=version).call(
                {}, method, **kwargs)
        return call

    def _call(self, method, _server=None, **kwargs):
        if _server is not None and self._routed:
            kwargs['_server'] = _server
        response = self._raw_call(method, **kwargs)
        self._check(response)
        return response

    def _raw_call(self, method, **kwargs):
        try:
            return self._caller(method, **kwargs)
        except exceptions.SnapshotFailed:
            raise
        except Exception as exc:  # noqa: any RPC failure is retried
            raise exceptions.SnapshotFailed(
                '%s of stream %s failed: %s: %s' % (
                    method, self.stream, type(exc).__name__,
                    str(exc)[:200])) from None

    def _close_quietly(self, response):
        snapshot_id = response.get('snapshot_id') \
            if isinstance(response, dict) else None
        if not isinstance(snapshot_id, str):
            return
        try:
            self._caller('snapshot_close', snapshot_id=snapshot_id)
        except Exception as exc:  # noqa: best effort, the host expires it
            LOG.warning('Could not close snapshot %s of stream %s: %s',
                        snapshot_id, self.stream, type(exc).__name__)

    def _check(self, response):
        try:
            if not isinstance(response, dict):
                raise wire.WireError('malformed', 'response not an object')
            major, _minor = wire.parse_format(response)
            if major != wire.FORMAT_MAJOR:
                raise wire.WireError('unknown_version', 'newer format')
            if response.get('stream') != self.stream:
                raise wire.WireError('malformed', 'another stream')
            wire.check_signature(response, self._key)
        except wire.WireError as exc:
            LOG.warning('Rejected snapshot response of stream %s: %s',
                        self.stream, exc.reason)
            raise exceptions.SnapshotFailed(
                'snapshot response rejected: %s' % exc.reason) from None

    def open(self, tables=None):
        names = list(tables or [])
        # The deadline (when this call stops waiting) lets the host refuse
        # the request instead of opening a snapshot nobody reads, when it
        # takes the request up too late (e.g. queued while it restarted).
        auth = snapshot_auth.request_auth(self._key, self.stream, names,
                                          self.client,
                                          timeout=self._timeout)
        response = self._raw_call('snapshot_open', tables=names, auth=auth)
        # Whatever is wrong with the answer, a snapshot the host opened
        # is closed again before the failure is raised.
        try:
            self._check(response)
            snap = _RPCSnapshot(self, response)
            if not isinstance(snap.watermark, int):
                raise TypeError('watermark')
        except exceptions.SnapshotFailed:
            self._close_quietly(response)
            raise
        except (KeyError, TypeError, AttributeError) as exc:
            self._close_quietly(response)
            raise exceptions.SnapshotFailed(
                'bad snapshot_open response: %s' % exc) from None
        return snap
