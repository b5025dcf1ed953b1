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

"""Bulk encoding and loading of mirrored rows (``consumer_rows``).

Used by :meth:`consumer.state.StateStore.replace_table` (a whole table
after a snapshot) and :meth:`~consumer.state.StateStore.load_rows`
(resume). Keys and rows are encoded by :mod:`consumer.store_codec`,
the same functions the delta path (``commit_batch``) uses, so both store
the same bytes.

Loading into PostgreSQL through psycopg2 uses ``COPY ... FROM STDIN``
(CSV), one statement streamed in chunks of :data:`STREAM_CHUNK` rows
(the server inserts a chunk while the next is encoded); every other
backend an ``INSERT`` executemany in batches of :data:`INSERT_CHUNK`
rows (which MySQL drivers send as multi-row ``INSERT``\\ s and SQLite
runs as one prepared statement).
"""

import csv
import io
import itertools
import json

from consumer import gc_pause
from consumer import store_codec
from oslo_publish import wire

#: Rows encoded per read of the COPY (PostgreSQL) stream.
STREAM_CHUNK = 1000
#: Rows per executemany batch (other backends).
INSERT_CHUNK = 5000

_PLAIN = (str, int, bool, type(None))

_DECODER = json.JSONDecoder()
_loads = _DECODER.decode


def _records(stream, table, items):
    row_text = store_codec.row_text
    key_text = store_codec.key_text
    key_hash = store_codec.key_hash
    for key, row in items:
        text = key_text(key)
        yield (stream, table, key_hash(text), text, row_text(row))


def streams(engine):
    """True if loads into ``engine`` are one streamed ``COPY``."""
    return engine.dialect.name == 'postgresql' and \
        engine.dialect.driver == 'psycopg2'


def _copy_target(conn):
    if conn.dialect.name != 'postgresql' or \
            conn.dialect.driver != 'psycopg2':
        return None
    return conn.connection.dbapi_connection


def insert_rows(conn, table_obj, stream, table, items):
    """Insert ``(key, row)`` ``items`` of ``table`` into ``table_obj``.

    :param conn: a SQLAlchemy Connection inside the caller's transaction.
    """
    with gc_pause.paused():
        _insert_rows(conn, table_obj, stream, table, items)


def _insert_rows(conn, table_obj, stream, table, items):
    raw = _copy_target(conn)
    records = _records(stream, table, items)
    if raw is not None:
        _copy(raw, table_obj, records)
        return
    names = ('stream', 'table_name', 'key_hash', 'key_json', 'row_json')
    batch = []
    for record in records:
        batch.append(dict(zip(names, record)))
        if len(batch) >= INSERT_CHUNK:
            conn.execute(table_obj.insert(), batch)
            batch = []
    if batch:
        conn.execute(table_obj.insert(), batch)


class _CSVStream(object):
    """A file whose ``read()`` yields the CSV text of ``records``.

    ``COPY ... FROM STDIN`` pulls it chunk by chunk (of
    :data:`STREAM_CHUNK` rows) while the server inserts what it already
    received, so encoding and inserting overlap in one statement.
    """

    #: The exception that ended reading, if any.
    error = None

    def __init__(self, records):
        self._records = records
        self._buf = io.StringIO()
        self._writer = csv.writer(self._buf, lineterminator='\n')

    def read(self, size=-1):
        buf = self._buf
        buf.seek(0)
        buf.truncate()
        try:
            self._writer.writerows(
                itertools.islice(self._records, STREAM_CHUNK))
        except Exception as exc:
            # psycopg2 cancels the COPY and raises QueryCanceled; the
            # caller re-raises this, the cause.
            self.error = exc
            raise
        return buf.getvalue()

    readline = read


def _copy(raw, table_obj, records):
    statement = ('COPY %s (stream, table_name, key_hash, key_json, '
                 'row_json) FROM STDIN WITH (FORMAT csv)' % table_obj.name)
    cursor = raw.cursor()
    stream = _CSVStream(records)
    try:
        cursor.copy_expert(statement, stream)
    except Exception:
        if stream.error is not None:
            raise stream.error from None
        raise
    finally:
        cursor.close()


def decode_row(data):
    """:func:`oslo_publish.wire.decode_row`, faster for plain values.

    Text, integers, booleans and nulls decode to themselves; anything
    else goes through :func:`oslo_publish.wire.decode_value` (and its
    checks).

    :raises oslo_publish.wire.WireError: as ``wire.decode_row``.
    """
    if not isinstance(data, dict):
        raise wire.WireError('malformed', 'row image is not an object')
    out = {}
    for name, value in data.items():
        if type(value) in _PLAIN:
            if type(name) is not str:
                raise wire.WireError('malformed',
                                     'column name is not a string')
            out[name] = value
        else:
            out.update(wire.decode_row({name: value}))
    return out


def loads(text):
    """JSON text to data (one shared decoder)."""
    return _loads(text)
