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

"""The wire between the two halves: one vocabulary, imported by both.

Format version 1.1 (``"format": "1.1"``; 1.0 is still read, see
below). Every message is a JSON object
sent as the payload of an oslo.messaging notification whose
``publisher_id`` is ``oslo_publish.<stream>``. Two kinds exist:

Delta message (event type :data:`EVENT_DELTA`)::

    {"format": "1.0", "kind": "delta", "stream": "nova",
     "first_seq": 101, "last_seq": 102,
     "sent_at": "2026-11-22T01:02:03.123456+00:00",
     "tables": {"instances": {"pk": ["id"], "version": "3f0c9a1b2d4e5f60"}},
     "transactions": [
        {"seq": 101, "txid": "6f1e...", "committed_at": "2026-...+00:00",
         "changes": [
            {"table": "instances", "op": "insert", "key": [7],
             "after": {"id": 7, "host": "c1", ...}},
            {"table": "instances", "op": "update", "key": [5],
             "after": {...full after-image...},
             "before": {"host": "c0"}, "changed": ["host"]},
            {"table": "instances", "op": "delete", "key": [3],
             "before": {...full before-image...}}]},
        {"seq": 102, ...}],
     "signature": "<hex HMAC-SHA256>"}

Transactions carry consecutive sequence numbers ``first_seq`` ..
``last_seq``. ``tables`` gives, for every table a message mentions, its
primary-key column names (the order of ``key``) and its schema version: a
stable fingerprint of the published columns and their types, see
:func:`schema_version`.

A change may also be a *table invalidation*, published where capture
could not see the exact rows a statement touched (``INSERT ... SELECT``
without ``RETURNING``, an upsert, DML in ``text()``, ...)::

            {"table": "instances", "op": "invalidate",
             "cause": "insert_from_select"}

It has no ``key`` and no images; ``cause`` is a short word. A consumer
applying it re-reads that one table from a snapshot whose watermark is
at or after the invalidation's seq (a targeted resync, counted per table
and cause). The host leaves out the invalidated table's row changes of
that transaction (the re-read supersedes them); changes of other tables
in the same transaction are applied as usual.

Every message of format 1.1 carries the stream's ``"epoch"``: an opaque
text (32 hex digits) created with the stream on the host database. A
restored or rebuilt host database is a new epoch; a consumer that sees
an epoch other than the one its positions belong to resyncs (cause
``epoch``) instead of treating the new sequence numbers as duplicates.
A 1.0 message has no epoch and is read as if it had the consumer's
current one. Snapshot ``snapshot_open`` answers carry the epoch too.

Heartbeat (event type :data:`EVENT_HEARTBEAT`)::

    {"format": "1.0", "kind": "heartbeat", "stream": "nova", "seq": 102,
     "sent_at": "...", "signature": "..."}

``seq`` is the last sequence number the stream has published.

Values are JSON scalars where JSON is lossless (``null``, booleans,
integers, strings, finite floats); every other value is a tagged object
``{"__t": TAG, "v": TEXT}``, see :func:`encode_value`.

The signature, when a key is configured, is HMAC-SHA256 over
:func:`canonical` of the message without its ``signature`` member.

Snapshot RPC (target topic :func:`snapshot_topic`, namespace
:data:`SNAPSHOT_NAMESPACE`, version :data:`SNAPSHOT_API_VERSION`):

``snapshot_open(tables, auth)``
    -> ``{"format", "stream", "epoch", "snapshot_id", "watermark",
    "server", "page_window", "layouts", "tables": {name: {"pk": [...],
    "columns": [[name, type], ...], "version": ...}}, "signature"}``.
    ``tables`` empty or None means every published table. Everything
    visible in the snapshot has ``seq <= watermark``; everything
    committed after it, ``seq > watermark``. ``auth`` is the signed
    request object of :mod:`oslo_publish.snapshot_auth`; a host with a
    signing key opens nothing for a request without a valid one. Its
    optional ``deadline`` (unix seconds; sent by consumers of this
    release, ignored by older hosts) is when the caller stops waiting: a
    host that takes the request up later refuses it (``late``) and opens
    nothing, or closes the snapshot again if opening ended after it.
    ``server`` and ``page_window`` (API 1.1; absent from older hosts)
    name the RPC server that owns the snapshot and say that it takes
    numbered page requests, up to ``page_window`` pages ahead.
    ``layouts`` (API 1.2; absent from older hosts) lists the page
    layouts it serves besides row objects (``["columns"]``).
``snapshot_page(snapshot_id, table, after)``
    -> ``{"format", "stream", "snapshot_id", "table", "rows": [row, ...],
    "next": key-or-null, "signature"}``. ``after`` is the encoded primary
    key of the last row of the previous page (None for the first page);
    rows come in primary-key order; ``next`` is None on the last page.
``snapshot_page(snapshot_id, table, index)`` (API 1.1)
    the same answer for page number ``index`` (0 is the first page of
    the table): the host reads the table's pages in key order, exactly
    as for ``after``, and answers page ``index`` once page ``index - 1``
    was read, so a client may have up to ``page_window`` numbered
    requests in flight and still receives every row once, in order
    (it reads the answers by number). A page after the table's last one
    is empty with ``next`` None, also once the snapshot was fully read
    and closed; an index more than ``page_window`` pages ahead of the
    pages read is refused (``bad_request``). A client sends numbered
    requests only to a host that announced ``page_window``, to its
    ``server`` and with version 1.1; every other request keeps version
    :data:`SNAPSHOT_API_BASE_VERSION`, so hosts of older releases keep
    answering it.
``snapshot_page(snapshot_id, table, index, layout="columns")`` (API 1.2)
    the same page in the columns layout: ``{..., "layout": "columns",
    "columns": [name, ...], "rows": [[value, ...], ...], "next"}``, each
    row a list of values (encoded as in a row image) in the order of
    ``columns``; the column names travel once per page instead of once
    per row (a page of the benchmark table is 40% smaller and is encoded
    without building a dict per row). A host of API 1.2 announces it in
    ``snapshot_open``'s answer with ``"layouts": ["columns"]``; a client
    asks for it only then, with version 1.2 (older hosts never see the
    argument), and a request without ``layout`` is answered with row
    objects as before (older clients).
``snapshot_close(snapshot_id)``
    -> ``{"closed": true}``.
"""

import base64
import collections
import datetime
import decimal
import hashlib
import hmac
import json
import math
import uuid

FORMAT_MAJOR = 1
FORMAT_MINOR = 1
FORMAT = '%d.%d' % (FORMAT_MAJOR, FORMAT_MINOR)

EVENT_DELTA = 'oslo_publish.delta'
EVENT_HEARTBEAT = 'oslo_publish.heartbeat'
PUBLISHER_PREFIX = 'oslo_publish.'

KIND_DELTA = 'delta'
KIND_HEARTBEAT = 'heartbeat'

INSERT = 'insert'
UPDATE = 'update'
DELETE = 'delete'
OPERATIONS = frozenset((INSERT, UPDATE, DELETE))
#: A table invalidation: not a row operation, see the module docstring.
INVALIDATE = 'invalidate'
EPOCH = 'epoch'

SNAPSHOT_NAMESPACE = 'oslo_publish.snapshot'
#: The snapshot RPC API the host serves (1.1: numbered pages; 1.2:
#: pages in the columns layout).
SNAPSHOT_API_VERSION = '1.2'
#: The version of every request that does not need 1.1.
SNAPSHOT_API_BASE_VERSION = '1.0'
#: The version of a numbered page request (``index``).
SNAPSHOT_API_NUMBERED_VERSION = '1.1'
#: The version of a numbered page request in the columns layout.
SNAPSHOT_API_COLUMNS_VERSION = '1.2'
#: The page layout of API 1.2: the column names once per page, each row
#: a list of values in that order.
LAYOUT_COLUMNS = 'columns'
#: Numbered page requests a host takes ahead of the pages it read (per
#: snapshot): it bounds the pages in flight, so the host's and the
#: client's memory stays bounded by the page size.
PAGE_WINDOW = 4

SIGNATURE = 'signature'
_TAG = '__t'


class WireError(ValueError):
    """A message or value does not follow the wire format.

    ``reason`` is a short machine-readable word used as the counter label
    on the consumer side (``malformed``, ``unknown_version``,
    ``unsigned``, ``bad_signature``).
    """

    def __init__(self, reason, detail):
        super().__init__('%s: %s' % (reason, detail))
        self.reason = reason
        self.detail = detail


def publisher_id(stream):
    """The oslo.messaging publisher_id of ``stream``'s messages."""
    return PUBLISHER_PREFIX + stream


def snapshot_topic(stream):
    """The RPC topic of ``stream``'s snapshot server."""
    return 'oslo_publish_snapshot.%s' % stream


# ---------------------------------------------------------------- values

def _iso(value):
    return value.isoformat()


def encode_value(value):
    """Encode one column value losslessly into JSON-compatible data.

    ===================  ==========================================
    Python value         encoding
    ===================  ==========================================
    None, bool, int,     as is
    str, finite float
    non-finite float     ``{"__t": "float", "v": "nan"|"inf"|"-inf"}``
    datetime (naive)     ``{"__t": "datetime", "v": ISO 8601}``
    datetime (aware)     same, the ISO text carries the offset
    date                 ``{"__t": "date", "v": "YYYY-MM-DD"}``
    time                 ``{"__t": "time", "v": ISO 8601}``
    timedelta            ``{"__t": "timedelta", "v": "<seconds>.<us>"}``
    Decimal              ``{"__t": "decimal", "v": str(value)}``
    bytes                ``{"__t": "bytes", "v": base64}``
    UUID                 ``{"__t": "uuid", "v": canonical text}``
    dict, list (JSON)    ``{"__t": "json", "v": the value}``
    enum.Enum            its ``name`` (what SQLAlchemy's Enum stores)
    ===================  ==========================================
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {_TAG: 'float', 'v': repr(value)}
    if isinstance(value, datetime.datetime):
        return {_TAG: 'datetime', 'v': _iso(value)}
    if isinstance(value, datetime.date):
        return {_TAG: 'date', 'v': _iso(value)}
    if isinstance(value, datetime.time):
        return {_TAG: 'time', 'v': _iso(value)}
    if isinstance(value, datetime.timedelta):
        micro = (value.days * 86400 + value.seconds) * 10 ** 6 + \
            value.microseconds
        return {_TAG: 'timedelta', 'v': str(micro)}
    if isinstance(value, decimal.Decimal):
        return {_TAG: 'decimal', 'v': str(value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {_TAG: 'bytes',
                'v': base64.b64encode(bytes(value)).decode('ascii')}
    if isinstance(value, uuid.UUID):
        return {_TAG: 'uuid', 'v': str(value)}
    if isinstance(value, (dict, list, tuple)):
        return {_TAG: 'json', 'v': _plain_json(value)}
    name = getattr(value, 'name', None)
    if name is not None and hasattr(type(value), '__members__'):
        return name
    raise WireError('malformed', 'cannot encode value of type %s'
                    % type(value).__name__)


def _plain_json(value):
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise WireError('malformed', 'JSON column value is not JSON: %s'
                        % exc) from exc


def _decode_float(text):
    if text not in ('nan', 'inf', '-inf'):
        raise ValueError(text)
    return float(text)


def _decode_timedelta(text):
    return datetime.timedelta(microseconds=int(text))


def _decode_bytes(text):
    return base64.b64decode(text.encode('ascii'), validate=True)


_DECODERS = {
    'float': _decode_float,
    'datetime': datetime.datetime.fromisoformat,
    'date': datetime.date.fromisoformat,
    'time': datetime.time.fromisoformat,
    'timedelta': _decode_timedelta,
    'decimal': decimal.Decimal,
    'bytes': _decode_bytes,
    'uuid': uuid.UUID,
}


def decode_value(data):
    """Decode one value encoded by :func:`encode_value`.

    :raises WireError: with reason ``malformed`` for anything else.
    """
    if data is None or isinstance(data, (bool, int, str)):
        return data
    if isinstance(data, float):
        if not math.isfinite(data):
            raise WireError('malformed', 'untagged non-finite float')
        return data
    if isinstance(data, dict) and len(data) == 2 and _TAG in data \
            and 'v' in data:
        tag, text = data[_TAG], data['v']
        if tag == 'json':
            return text
        decoder = _DECODERS.get(tag)
        if decoder is None or not isinstance(text, str):
            raise WireError('malformed', 'unknown value tag %r' % (tag,))
        try:
            return decoder(text)
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise WireError('malformed', 'bad %s value %r: %s'
                            % (tag, text, exc)) from exc
    raise WireError('malformed', 'value is not a wire value: %r'
                    % (type(data).__name__,))


def encode_row(row):
    """Encode a mapping of column name to value."""
    return {name: encode_value(value) for name, value in row.items()}


def decode_row(data):
    """Decode a mapping produced by :func:`encode_row`."""
    if not isinstance(data, dict):
        raise WireError('malformed', 'row image is not an object')
    out = {}
    for name, value in data.items():
        if not isinstance(name, str):
            raise WireError('malformed', 'column name is not a string')
        out[name] = decode_value(value)
    return out


def decode_key(data):
    """Decode an encoded primary key (a list) into a hashable tuple."""
    if not isinstance(data, list) or not data:
        raise WireError('malformed', 'key is not a non-empty list')
    key = tuple(decode_value(v) for v in data)
    for part in key:
        try:
            hash(part)
        except TypeError:
            raise WireError('malformed', 'key part is not hashable') \
                from None
    return key


# ------------------------------------------------- encoding and signatures

def canonical(message):
    """The canonical byte encoding of ``message`` (without signature).

    Sorted keys, no whitespace, UTF-8, no NaN: the same message always
    gives the same bytes on every Python version.
    """
    body = {k: v for k, v in message.items() if k != SIGNATURE}
    return json.dumps(body, sort_keys=True, separators=(',', ':'),
                      ensure_ascii=False, allow_nan=False).encode('utf-8')


def _key_bytes(key):
    return key.encode('utf-8') if isinstance(key, str) else bytes(key)


def signature_of(message, key):
    """HMAC-SHA256 hex digest of :func:`canonical` ``(message)``."""
    return hmac.new(_key_bytes(key), canonical(message),
                    hashlib.sha256).hexdigest()


def sign(message, key):
    """Return ``message`` with its signature added when ``key`` is set."""
    if key:
        message[SIGNATURE] = signature_of(message, key)
    return message


def check_signature(message, key):
    """Check ``message``'s signature against ``key`` (if one is set).

    :raises WireError: reason ``unsigned`` or ``bad_signature``.
    """
    if not key:
        return
    given = message.get(SIGNATURE)
    if not given:
        raise WireError('unsigned', 'message carries no signature')
    if not isinstance(given, str):
        raise WireError('bad_signature', 'signature is not text')
    try:
        expected = signature_of(message, key)
    except (TypeError, ValueError) as exc:
        raise WireError('malformed', 'cannot encode message: %s' % exc) \
            from exc
    # Compared as bytes: compare_digest refuses non-ASCII text, and a
    # forged signature may be any text.
    if not hmac.compare_digest(given.encode('utf-8', 'surrogatepass'),
                               expected.encode('ascii')):
        raise WireError('bad_signature', 'signature does not match')


def encoded_size(message):
    """Size in bytes of ``message`` as JSON (what crosses the bus)."""
    return len(json.dumps(message, separators=(',', ':')).encode('utf-8'))


# ------------------------------------------------------------------ schema

def schema_version(columns):
    """Stable fingerprint of a table's published columns.

    ``columns`` is a sequence of ``(name, type_text)`` pairs. The result
    does not depend on the column order, only on the names and types: a
    column added, dropped or retyped changes it.
    """
    text = json.dumps(sorted([str(n), str(t)] for n, t in columns),
                      separators=(',', ':'))
    return hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]


def type_text(sqltype):
    """Dialect-neutral text of a SQLAlchemy type, for schema versions."""
    try:
        from sqlalchemy.engine import default
        return sqltype.compile(dialect=default.StrCompileDialect())
    except Exception:  # noqa: broad - any type the compiler cannot render
        return type(sqltype).__name__.upper()


# ----------------------------------------------------------------- messages

def utcnow_text():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def delta_message(stream, transactions, tables, key=None, epoch=None):
    """Build (and sign) a delta message.

    :param transactions: list of ``{"seq", "txid", "committed_at",
        "changes"}`` with consecutive ``seq``.
    :param tables: ``{table: {"pk": [...], "version": ...}}`` for every
        table the changes mention.
    """
    message = {
        'format': FORMAT, 'kind': KIND_DELTA, 'stream': stream,
        'first_seq': transactions[0]['seq'],
        'last_seq': transactions[-1]['seq'],
        'sent_at': utcnow_text(),
        'tables': tables,
        'transactions': transactions,
    }
    if epoch is not None:
        message[EPOCH] = epoch
    return sign(message, key)


def heartbeat_message(stream, seq, key=None, epoch=None):
    """Build (and sign) a heartbeat carrying the stream's last seq."""
    message = {'format': FORMAT, 'kind': KIND_HEARTBEAT, 'stream': stream,
               'seq': seq, 'sent_at': utcnow_text()}
    if epoch is not None:
        message[EPOCH] = epoch
    return sign(message, key)


def new_epoch():
    """A new stream epoch: 32 random hex digits."""
    return uuid.uuid4().hex


def message_epoch(message):
    """The epoch a (validated) message carries, or None (format 1.0)."""
    return message.get(EPOCH)


def parse_format(message):
    """Return ``(major, minor)`` of a message's format.

    :raises WireError: ``malformed`` if absent or not ``"<int>.<int>"``.
    """
    text = message.get('format') if isinstance(message, dict) else None
    if not isinstance(text, str):
        raise WireError('malformed', 'no format version')
    parts = text.split('.')
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise WireError('malformed', 'bad format version %r' % (text,))
    return int(parts[0]), int(parts[1])


def _require(cond, detail):
    if not cond:
        raise WireError('malformed', detail)


def _is_seq(value):
    return isinstance(value, int) and not isinstance(value, bool) \
        and 0 <= value < 2 ** 63


def _validate_change(change, tables):
    _require(isinstance(change, dict), 'change is not an object')
    table = change.get('table')
    _require(isinstance(table, str) and table in tables,
             'change names a table missing from the header')
    op = change.get('op')
    if op == INVALIDATE:
        cause = change.get('cause')
        _require(isinstance(cause, str) and 0 < len(cause) <= 64,
                 'invalidation without cause')
        return
    _require(op in OPERATIONS, 'unknown operation %r' % (op,))
    key = change.get('key')
    _require(isinstance(key, list)
             and len(key) == len(tables[table]['pk']),
             'key does not match the primary key of %s' % table)
    if op in (INSERT, UPDATE):
        _require(isinstance(change.get('after'), dict),
                 '%s without after-image' % op)
    if op in (UPDATE, DELETE):
        _require(isinstance(change.get('before'), dict),
                 '%s without before-image' % op)
    if op == UPDATE:
        changed = change.get('changed')
        _require(isinstance(changed, list)
                 and all(isinstance(c, str) for c in changed),
                 'update without changed column list')


def validate(message, changes=True):
    """Check a message's structure (format major 1).

    Signature and size are checked elsewhere (:func:`check_signature`,
    :func:`encoded_size`); a newer major format is reported by
    :func:`parse_format`'s caller as ``unknown_version``.

    :param changes: False leaves out the checks of each change object
        (for a caller that checks them as it decodes them, with the
        same rules, before using the message).
    :raises WireError: reason ``malformed`` with what is wrong.
    """
    _require(isinstance(message, dict), 'message is not an object')
    stream = message.get('stream')
    _require(isinstance(stream, str) and stream, 'no stream name')
    if EPOCH in message:
        epoch = message[EPOCH]
        _require(isinstance(epoch, str) and 0 < len(epoch) <= 64,
                 'bad epoch')
    kind = message.get('kind')
    if kind == KIND_HEARTBEAT:
        _require(_is_seq(message.get('seq')), 'heartbeat without seq')
        return
    _require(kind == KIND_DELTA, 'unknown kind %r' % (kind,))
    first, last = message.get('first_seq'), message.get('last_seq')
    _require(_is_seq(first) and _is_seq(last) and first <= last,
             'bad sequence range')
    tables = message.get('tables')
    _require(isinstance(tables, dict), 'no tables header')
    for name, info in tables.items():
        _require(isinstance(info, dict)
                 and isinstance(info.get('pk'), list) and info['pk']
                 and all(isinstance(c, str) for c in info['pk'])
                 and isinstance(info.get('version'), str),
                 'bad header of table %r' % (name,))
    txs = message.get('transactions')
    _require(isinstance(txs, list) and len(txs) == last - first + 1,
             'transactions do not match the sequence range')
    for expected, tx in enumerate(txs, start=first):
        _require(isinstance(tx, dict) and tx.get('seq') == expected
                 and _is_seq(tx.get('seq')),
                 'transaction sequence numbers are not consecutive')
        _require(isinstance(tx.get('changes'), list),
                 'transaction without changes')
        if changes:
            for change in tx['changes']:
                _validate_change(change, tables)


# ------------------------------------------------------ decoded changes

class Change(collections.namedtuple(
        'Change', 'table op key after before changed cause',
        defaults=(None,))):
    """One decoded row change, as the consumer applies it.

    ``key`` is a tuple of decoded primary-key values (in the table's
    primary-key column order); ``after`` and ``before`` are dicts of
    decoded values or None; ``changed`` is a tuple of column names
    (updates only, else empty). A table invalidation has ``op``
    :data:`INVALIDATE`, ``key`` None and its ``cause``.
    """

    __slots__ = ()


def decode_change(change):
    """Decode one validated change object into a :class:`Change`."""
    if change['op'] == INVALIDATE:
        return invalidation(change['table'], change['cause'])
    after = change.get('after')
    before = change.get('before')
    return Change(
        table=change['table'], op=change['op'],
        key=decode_key(change['key']),
        after=decode_row(after) if after is not None else None,
        before=decode_row(before) if before is not None else None,
        changed=tuple(change.get('changed') or ()))


def encode_change(change):
    """Encode a :class:`Change` back into its wire object."""
    if change.op == INVALIDATE:
        return {'table': change.table, 'op': INVALIDATE,
                'cause': change.cause}
    out = {'table': change.table, 'op': change.op,
           'key': [encode_value(v) for v in change.key]}
    if change.after is not None:
        out['after'] = encode_row(change.after)
    if change.before is not None:
        out['before'] = encode_row(change.before)
    if change.op == UPDATE:
        out['changed'] = list(change.changed)
    return out


def invalidation(table, cause):
    """A table invalidation :class:`Change` (see the module docstring)."""
    return Change(table=table, op=INVALIDATE, key=None, after=None,
                  before=None, changed=(), cause=cause)
