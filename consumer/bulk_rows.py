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
in the text format, one statement streamed in chunks of
:data:`STREAM_CHUNK` rows (the server inserts a chunk while the next is
encoded). The stored texts are JSON, which never holds a raw tab,
newline or carriage return (its encoder escapes every control
character), so a line is the fields joined by tabs with only their
backslashes doubled; a chunk's rows are encoded by one C-level ``map``
each when all their values are plain (:func:`_copy_text`). Every other
backend an ``INSERT`` executemany in batches of :data:`INSERT_CHUNK`
rows (which MySQL drivers send as multi-row ``INSERT``\\ s and SQLite
runs as one prepared statement).
"""

import itertools
import json
import operator

from consumer import gc_pause
from consumer import store_codec
from oslo_publish import wire

#: Rows encoded per read of the COPY (PostgreSQL) stream.
STREAM_CHUNK = 1000
#: Rows per executemany batch (other backends).
INSERT_CHUNK = 5000

_PLAIN = (str, int, bool, type(None))
_INT = frozenset((int,))
_STR = frozenset((str,))
#: Column value types a row text holds as their own JSON texts.
_SCALAR = frozenset((str, int, type(None)))
#: Added to a one-integer key to make its key hash (see
#: :func:`consumer.store_codec.key_hash`).
_INT_OFFSET = store_codec._INT_OFFSET

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
    if raw is not None:
        _copy(raw, table_obj, stream, table, items)
        return
    records = _records(stream, table, items)
    names = ('stream', 'table_name', 'key_hash', 'key_json', 'row_json')
    batch = []
    for record in records:
        batch.append(dict(zip(names, record)))
        if len(batch) >= INSERT_CHUNK:
            conn.execute(table_obj.insert(), batch)
            batch = []
    if batch:
        conn.execute(table_obj.insert(), batch)


def _copy_escape(text):
    """``text`` as a field of ``COPY``'s text format."""
    if '\\' in text:
        text = text.replace('\\', '\\\\')
    if '\t' in text or '\n' in text or '\r' in text:
        text = text.replace('\t', '\\t').replace('\n', '\\n') \
            .replace('\r', '\\r')
    return text


def _json_field(text):
    # A JSON text holds no raw tab, newline or carriage return.
    if '\\' in text:
        return text.replace('\\', '\\\\')
    return text


#: The JSON text of a string (what the row encoder writes for one).
_json_string = json.encoder.encode_basestring


def _scalar_json(value):
    # The JSON text of a str, int or None (a column of mixed ones).
    if value is None:
        return 'null'
    if type(value) is int:
        return int.__repr__(value)
    return _json_string(value)


def _column_field(kinds, values):
    """``(template field, values)`` of a column, or None.

    A column of integers only is formatted by the line template itself
    (``%d``, an integer's JSON text); one of text only is encoded by one
    C-level ``map``; one of text, integers and nulls value by value.
    Anything else (booleans, floats, tagged values): None.
    """
    if kinds == _INT:
        return '%d', values
    if kinds == _STR:
        return '%s', map(_json_string, values)
    if kinds <= _SCALAR:
        return '%s', map(_scalar_json, values)
    return None


def _columns_text(prefix, keys, rows):
    """:func:`_copy_text` of rows of the same columns, or None.

    Every row a mapping of the same text column names whose columns
    each hold text, integers and nulls only: the lines are formatted
    column by column (one C-level ``map`` per column and one template
    for the lines) instead of row by row through the JSON encoder. The
    template spells the row text as the encoder does (keys sorted,
    ``,`` and ``:`` separators, the same string encoder), so the bytes
    are the same. Any other batch: None.
    """
    if not rows:
        return None
    names = sorted(rows[0])
    if set(map(type, names)) != _STR or \
            set(map(len, rows)) != {len(names)}:
        return None
    fields = []
    columns = []
    for name in names:
        try:
            values = list(map(operator.itemgetter(name), rows))
        except (KeyError, TypeError):
            return None  # not every row has the column
        field = _column_field(frozenset(map(type, values)), values)
        if field is None:
            return None
        fields.append('%s:%s' % (_json_string(name).replace('%', '%%'),
                                 field[0]))
        columns.append(field[1])
    firsts = store_codec.int_keys(keys)
    if firsts is not None:
        head = ['%016x\t[%d]', map(_INT_OFFSET.__add__, firsts), firsts]
    else:
        texts = list(map(store_codec.key_text, keys))
        head = ['%s\t%s', store_codec.key_hashes(keys, texts), texts]
    line = '%s%s\t{%s}\n' % (
        prefix.replace('%', '%%'), head[0], ','.join(fields))
    return ''.join(map(line.__mod__, zip(*head[1:], *columns)))


def _copy_text(prefix, chunk):
    """The ``COPY`` text-format lines of ``(key, row)`` pairs.

    Rows of plain columns are formatted by :func:`_columns_text`; the
    others are encoded row by row by :mod:`consumer.store_codec`. The
    lines are joined as they are; only when the result holds a
    backslash (rare: an escaped character in a JSON text, or in the
    prefix) are they joined again with every field escaped.
    """
    keys = [key for key, _row in chunk]
    rows = [row for _key, row in chunk]
    text = _columns_text(prefix, keys, rows)
    if text is not None and '\\' not in text:
        return text
    key_texts = store_codec.key_texts(keys)
    hashes = store_codec.key_hashes(keys, key_texts)
    row_texts = store_codec.row_texts(rows)
    line = '%s%s\t%s\t%s\n'.__mod__
    text = ''.join(map(line, zip(itertools.repeat(prefix), hashes,
                                 key_texts, row_texts)))
    if '\\' not in text:
        return text
    field = _json_field
    return ''.join(map(line, zip(itertools.repeat(prefix), hashes,
                                 map(field, key_texts),
                                 map(field, row_texts))))


class _CopyStream(object):
    """A file whose ``read()`` yields the ``COPY`` text of ``items``.

    ``COPY ... FROM STDIN`` pulls it chunk by chunk (of
    :data:`STREAM_CHUNK` rows) while the server inserts what it already
    received, so encoding and inserting overlap in one statement.
    """

    #: The exception that ended reading, if any.
    error = None

    def __init__(self, stream, table, items):
        self._items = iter(items)
        self._prefix = '%s\t%s\t' % (_copy_escape(stream),
                                     _copy_escape(table))

    def read(self, size=-1):
        try:
            chunk = list(itertools.islice(self._items, STREAM_CHUNK))
            return _copy_text(self._prefix, chunk) if chunk else ''
        except Exception as exc:
            # psycopg2 cancels the COPY and raises QueryCanceled; the
            # caller re-raises this, the cause.
            self.error = exc
            raise

    readline = read


def _copy(raw, table_obj, stream, table, items):
    statement = ('COPY %s (stream, table_name, key_hash, key_json, '
                 'row_json) FROM STDIN' % table_obj.name)
    cursor = raw.cursor()
    source = _CopyStream(stream, table, items)
    try:
        cursor.copy_expert(statement, source)
    except Exception:
        if source.error is not None:
            raise source.error from None
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
