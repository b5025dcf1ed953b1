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

"""An in-process publisher for the consumer's unit tests.

:class:`FakeHost` keeps tables in dicts, turns writes into wire delta
messages with gapless sequence numbers (built by
:func:`oslo_publish.wire.delta_message`, so they are the real format) and
serves the snapshot RPC contract of :mod:`oslo_publish.wire` through
:meth:`caller` (what :class:`consumer.source.RPCSnapshotSource` takes
instead of an RPC client). The end-to-end tests use the real host.
"""

import datetime
import threading
import uuid

from oslo_publish import snapshot_auth
from oslo_publish import wire

PAGE = 3
_COLUMNS = (('id', 'INTEGER'), ('name', 'VARCHAR'))


class FakeHost(object):

    def __init__(self, stream='nova', key=None):
        self.stream = stream
        self.key = key
        self.seq = 0
        self.tables = {}
        self.snapshots_opened = 0
        self.fail_snapshots = 0
        self._open = {}
        self._lock = threading.Lock()

    def add_table(self, name, pk=('id',), columns=_COLUMNS):
        self.tables[name] = {
            'pk': list(pk), 'columns': [list(c) for c in columns],
            'version': wire.schema_version(columns), 'rows': {}}

    def header(self, *names):
        return {n: {'pk': self.tables[n]['pk'],
                    'version': self.tables[n]['version']} for n in names}

    def _key(self, table, row):
        return tuple(row[c] for c in self.tables[table]['pk'])

    def change(self, table, op, row):
        """Apply one change to the host tables; return its wire object."""
        rows = self.tables[table]['rows']
        key = self._key(table, row)
        encoded_key = [wire.encode_value(v) for v in key]
        if op == wire.INSERT:
            rows[key] = dict(row)
            return {'table': table, 'op': op, 'key': encoded_key,
                    'after': wire.encode_row(row)}
        if op == wire.UPDATE:
            before = rows[key]
            after = dict(before, **row)
            rows[key] = after
            changed = sorted(c for c in row if before.get(c) != row[c])
            return {'table': table, 'op': op, 'key': encoded_key,
                    'after': wire.encode_row(after),
                    'before': wire.encode_row(before), 'changed': changed}
        before = rows.pop(key)
        return {'table': table, 'op': op, 'key': encoded_key,
                'before': wire.encode_row(before)}

    def commit(self, *changes):
        """Commit wire changes as one transaction; return its dict."""
        with self._lock:
            self.seq += 1
            return {'seq': self.seq, 'txid': uuid.uuid4().hex,
                    'committed_at': datetime.datetime.now(
                        datetime.timezone.utc).isoformat(),
                    'changes': list(changes)}

    def write(self, table, op, row):
        """One single-change transaction as a delta message payload."""
        tx = self.commit(self.change(table, op, row))
        return self.message([tx])

    def message(self, transactions):
        tables = sorted({c['table'] for tx in transactions
                         for c in tx['changes']})
        return wire.delta_message(self.stream, transactions,
                                  self.header(*tables), key=self.key)

    def heartbeat(self, seq=None):
        return wire.heartbeat_message(
            self.stream, self.seq if seq is None else seq, key=self.key)

    # ------------------------------------------------- snapshot RPC

    def caller(self, method, **kwargs):
        return getattr(self, method)({}, **kwargs)

    def snapshot_open(self, ctxt, tables=None, auth=None):
        # The request is authenticated as the real server does it.
        snapshot_auth.check_request(auth, self.key, self.stream, tables)
        if self.fail_snapshots:
            self.fail_snapshots -= 1
            raise RuntimeError('snapshot refused')
        with self._lock:
            self.snapshots_opened += 1
            names = tables or sorted(self.tables)
            ident = uuid.uuid4().hex
            copy = {n: sorted(self.tables[n]['rows'].items())
                    for n in names}
            self._open[ident] = copy
            response = {
                'format': wire.FORMAT, 'stream': self.stream,
                'snapshot_id': ident, 'watermark': self.seq,
                'tables': {n: {'pk': self.tables[n]['pk'],
                               'columns': self.tables[n]['columns'],
                               'version': self.tables[n]['version']}
                           for n in names}}
        return wire.sign(response, self.key)

    def snapshot_page(self, ctxt, snapshot_id, table, after):
        items = self._open[snapshot_id][table]
        start = 0
        if after is not None:
            key = wire.decode_key(after)
            start = next((i + 1 for i, (k, _r) in enumerate(items)
                          if k == key), len(items))
        page = items[start:start + PAGE]
        more = start + PAGE < len(items)
        response = {
            'format': wire.FORMAT, 'stream': self.stream,
            'snapshot_id': snapshot_id, 'table': table,
            'rows': [wire.encode_row(r) for _k, r in page],
            'next': [wire.encode_value(v) for v in page[-1][0]]
            if more else None}
        return wire.sign(response, self.key)

    def snapshot_close(self, ctxt, snapshot_id):
        self._open.pop(snapshot_id, None)
        return {'closed': True}
