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

"""The stored texts of mirrored rows, encoded and decoded in bulk.

``consumer_rows`` keeps, per row, the canonical wire JSON of its primary
key, the SHA-256 of that text and the wire JSON of the row
(:mod:`consumer.state`). Two hot paths go through here:

* :func:`encode_changes`, the delta path (``commit_batch``): a batch of
  changes reduced to the last image of every key, encoded once. Plain
  values (text, integers, booleans, nulls, finite floats) are their own
  wire encoding, so only the others go through
  :func:`oslo_publish.wire.encode_value`.
* :func:`decode_table`, the resume path: a whole table's stored texts
  parsed by ONE call of the C JSON decoder per column (the texts joined
  into one JSON array) instead of one call per row. Rows without a
  tagged value (no ``"__t"`` in the text) are used as parsed; the others,
  and keys that are not all integers and text, are decoded by
  :mod:`oslo_publish.wire` with its checks.

Both produce exactly the bytes of :func:`consumer.state.key_text` and of
``wire.encode_row``, so the delta path, the snapshot path
(:mod:`consumer.bulk_rows`) and a resume agree on every row.
"""

import hashlib
import itertools
import json
import math
import operator
import re

from consumer import gc_pause
from oslo_publish import wire

_ENCODER = json.JSONEncoder(sort_keys=True, separators=(',', ':'),
                            ensure_ascii=False, allow_nan=False)


def _one_shot_encoder(encoder):
    """``encoder.encode`` without its per-call setup, where possible.

    ``JSONEncoder.encode`` builds a new C encoder on every call; for the
    millions of rows of a snapshot that setup costs as much as the
    encoding. The C encoder built once here with ``encoder``'s settings
    gives the same text (it is what ``encode`` uses), minus the check
    for circular references, which decoded data cannot have.
    """
    make = getattr(json.encoder, 'c_make_encoder', None)
    if make is None:
        return encoder.encode
    chunks = make(None, encoder.default, json.encoder.encode_basestring,
                  None, encoder.key_separator, encoder.item_separator,
                  encoder.sort_keys, encoder.skipkeys, encoder.allow_nan)
    join = ''.join

    def encode(value):
        return join(chunks(value, 0))
    return encode


_json = _one_shot_encoder(_ENCODER)
_decode = json.JSONDecoder().decode

#: Value types whose wire encoding is the value itself (floats: finite).
_PLAIN = frozenset((str, int, bool, type(None)))
#: ... and finite floats, which JSON also carries as themselves.
_PLAIN_OR_FLOAT = _PLAIN | {float}
#: Key parts whose JSON text needs no encoder.
_INT_ONLY = frozenset((int,))
#: Key part types a decoded key may hold as they come out of JSON.
_KEY_PLAIN = frozenset((int, str))
#: The types of decoded row images that need no more checks ...
_DICT_ONLY = frozenset((dict,))
#: ... and of decoded keys.
_LIST_ONLY = frozenset((list,))
_FIRST = operator.itemgetter(0)
_SECOND = operator.itemgetter(1)
#: The tag of an encoded non-plain value, as it appears in a row text.
_TAGGED = '"%s"' % wire._TAG


def _value(value):
    kind = type(value)
    if kind in _PLAIN or (kind is float and math.isfinite(value)):
        return value
    return wire.encode_value(value)


def row_text(row):
    """The stored text of a row dict (``wire.encode_row``, as JSON)."""
    kinds = set(map(type, row.values()))
    if _PLAIN.issuperset(kinds):
        return _json(row)
    if _PLAIN_OR_FLOAT.issuperset(kinds):
        try:
            return _json(row)
        except ValueError:
            pass  # a non-finite float: tagged below
    return _json({name: _value(value) for name, value in row.items()})


def row_texts(rows):
    """``[row_text(row) for row in rows]``, at C speed for plain rows.

    When every value of every row is plain (text, integers, booleans,
    nulls: checked by C-level ``map`` calls), the rows are encoded by
    one ``map`` of the encoder; otherwise row by row.
    """
    values = itertools.chain.from_iterable(map(dict.values, rows))
    if _PLAIN.issuperset(map(type, values)):
        return list(map(_json, rows))
    return list(map(row_text, rows))


def key_text(key):
    """The stored text of a key tuple (canonical wire JSON)."""
    if _INT_ONLY.issuperset(map(type, key)):
        return '[%s]' % ','.join(map(int.__repr__, key))  # JSON's text
    if _KEY_PLAIN.issuperset(map(type, key)):
        return _json(key)
    return _json([_value(part) for part in key])


def key_texts(keys):
    """``[key_text(key) for key in keys]``, at C speed for integer keys.

    A batch of one-integer keys (the usual keys of a table) is formatted
    by one C-level ``map`` (an integer's JSON text is its ``%d``).
    """
    firsts = int_keys(keys)
    if firsts is not None:
        return list(map('[%d]'.__mod__, firsts))
    return list(map(key_text, keys))


#: A key text of one to three integers (the canonical JSON of
#: :func:`key_text`, which never has spaces or leading zeros).
_INT_PART = r'(-?(?:0|[1-9][0-9]{0,18}))'
_INT_KEY = re.compile(r'\[%s(?:,%s)?(?:,%s)?\]\Z'
                      % (_INT_PART, _INT_PART, _INT_PART))
#: Added to a 64-bit integer key part so that it is not negative.
_INT_OFFSET = 1 << 63
_INT_LIMIT = 1 << 64


def key_hash(text):
    """The indexed form of a key text: at most 64 characters.

    Keys of one to three 64-bit integers: each part plus 2**63 as 16
    lowercase hex digits, so the texts sort like the keys and a snapshot
    (which comes in key order) fills the primary-key index of
    ``consumer_rows`` at its right end instead of at random places (the
    storage revision ``0003`` rewrote older rows). Every other key: the
    SHA-256 hex of its text (64 characters, never the length of an
    integer form).
    """
    match = _INT_KEY.match(text)
    if match is not None:
        values = [int(part) + _INT_OFFSET for part in match.groups()
                  if part is not None]
        if all(0 <= value < _INT_LIMIT for value in values):
            return ''.join(['%016x' % value for value in values])
    return sha_key_hash(text)


def key_hashes(keys, texts):
    """``[key_hash(text) for text in texts]`` of ``keys`` and their texts.

    A batch of one-integer keys (the common case of a snapshot) is
    hashed by C-level ``map`` calls straight from the integers.
    """
    firsts = int_keys(keys)
    if firsts is not None:
        return list(map('%016x'.__mod__, map(_INT_OFFSET.__add__, firsts)))
    return list(map(key_hash, texts))


def int_keys(keys):
    """The integers of a batch of one-integer keys, or None.

    None unless every key is one ``int`` in the range whose key hash is
    the integer itself plus :data:`_INT_OFFSET` (the common case of a
    table, formatted and hashed by C-level ``map`` calls).
    """
    if not keys or set(map(len, keys)) != {1}:
        return None
    firsts = list(map(_FIRST, keys))
    if set(map(type, firsts)) != _INT_ONLY or \
            not (-_INT_OFFSET <= min(firsts) and max(firsts) < _INT_OFFSET):
        return None
    return firsts


def sha_key_hash(text):
    """The key hash of storage revisions before ``0003`` (SHA-256 hex)."""
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


class Encoded(object):
    """The stored form of a batch of changes, per table.

    ``upserts[table]``: ``[(key_hash, key_text, row_text)]`` of the keys
    whose last change leaves a row; ``deletes[table]``: key hashes whose
    last change deletes it. A key is in at most one of the two.
    """

    __slots__ = ('upserts', 'deletes')

    def __init__(self):
        self.upserts = {}
        self.deletes = {}


#: The table of a change (C-level, for whole batches).
TABLE_OF = operator.attrgetter('table')
_KEY = operator.attrgetter('key')
_OP = operator.attrgetter('op')
_AFTER = operator.attrgetter('after')


def encode_changes(changes):
    """Reduce ``changes`` (in order) to the last image of each key.

    The keys, hashes and row texts are computed by C-level ``map`` calls
    (:func:`key_hashes`, :func:`row_texts`): the persister encodes every
    change the stream applies. The collector is paused meanwhile
    (:func:`consumer.gc_pause.paused`): the intermediate tuples all die
    when the batch is written, scanning them would only cost time (and
    move them to older generations, where they count towards the next
    full collection).

    :param changes: :class:`oslo_publish.wire.Change` objects (no
        invalidations).
    :returns: :class:`Encoded`.
    """
    with gc_pause.paused():
        return _encode_changes(changes)


def _encode_changes(changes):
    tables = list(map(TABLE_OF, changes))
    keys = list(map(_KEY, changes))
    texts = key_texts(keys)
    # Later changes of a key replace earlier ones: dict order is the
    # first occurrence, the value the last.
    last = dict(zip(zip(tables, texts), zip(keys, changes)))
    encoded = Encoded()
    for table, entries in _by_table(last, tables).items():
        if wire.DELETE in set(map(_OP, [e[2] for e in entries])):
            gone = [e for e in entries if e[2].op == wire.DELETE]
            entries = [e for e in entries if e[2].op != wire.DELETE]
            encoded.deletes[table] = key_hashes([e[1] for e in gone],
                                                [e[0] for e in gone])
        if entries:
            found = [e[0] for e in entries]
            encoded.upserts[table] = list(zip(
                key_hashes([e[1] for e in entries], found), found,
                row_texts(list(map(_AFTER, [e[2] for e in entries])))))
    return encoded


def _by_table(last, tables):
    """``{table: [(key text, key, change)]}`` of :func:`encode_changes`."""
    if len(set(tables)) == 1:
        return {tables[0]: [(text, key, change) for (_table, text), (
            key, change) in last.items()]}
    groups = {}
    for (table, text), (key, change) in last.items():
        groups.setdefault(table, []).append((text, key, change))
    return groups


def _join_decode(texts, tagged=False):
    # One C-level parse for many texts; None when they do not come back
    # one value per text (a malformed text), so the caller parses each.
    # ``tagged``: (values, whether any text holds a tagged value).
    joined = '[%s]' % ','.join(texts)
    try:
        values = _decode(joined)
    except ValueError:
        return None
    if len(values) != len(texts):
        return None
    return (values, _TAGGED in joined) if tagged else values


def _plain_keys(keys):
    """Key tuples of decoded key lists, by C-level calls; None if not plain.

    Plain: every key a non-empty list of integers and text (what
    :func:`_key` takes as it is).
    """
    if not _LIST_ONLY.issuperset(map(type, keys)) or \
            0 in set(map(len, keys)) or not _KEY_PLAIN.issuperset(
                map(type, itertools.chain.from_iterable(keys))):
        return None
    return list(map(tuple, keys))


def _key(data):
    if type(data) is list and data and \
            all(type(part) in _KEY_PLAIN for part in data):
        return tuple(data)
    return wire.decode_key(data)


def decode_table(found):
    """``{key tuple: row dict}`` of stored ``(key_text, row_text)`` pairs.

    :raises oslo_publish.wire.WireError: a stored key or row is not a
        valid wire key or row image.
    :raises ValueError: a stored text is not JSON.
    """
    key_texts = list(map(_FIRST, found))
    row_texts = list(map(_SECOND, found))
    keys = _join_decode(key_texts)
    if keys is None:
        keys = [_decode(text) for text in key_texts]
    joined = _join_decode(row_texts, tagged=True)
    if joined is None:
        datas = [_decode(text) for text in row_texts]
    else:
        datas, tagged = joined
        if not tagged and _DICT_ONLY.issuperset(map(type, datas)):
            plain_keys = _plain_keys(keys)
            if plain_keys is not None:
                return dict(zip(plain_keys, datas))
    table = {}
    plain = _KEY_PLAIN
    for key, data, text in zip(keys, datas, row_texts):
        if type(key) is list and len(key) == 1 and type(key[0]) in plain:
            key = (key[0],)
        else:
            key = _key(key)
        if type(data) is not dict or _TAGGED in text:
            data = wire.decode_row(data)
        table[key] = data
    return table
