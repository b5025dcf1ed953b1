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


"""Delta messages: split numbered transactions, sign, publish, count."""

import collections

from oslo_publish import exceptions
from oslo_publish import wire


class Entry(collections.namedtuple(
        'Entry', 'id seq txid committed_at payload')):
    """An outbox entry as the relay reads it (``seq`` may be None)."""


#: Bytes a transaction adds to a message beyond its ``changes`` text
#: (its ``seq``, ``txid`` and ``committed_at`` with their keys, and the
#: separator), at most: :func:`payload_bound`.
TX_OVERHEAD = 128

#: How many bytes a character of an outbox payload can become, at most,
#: when its ``changes`` are encoded again for the message (ASCII,
#: compact): an ASCII character at most 6 (``\u007f``; a number in
#: exponent form grows less: ``1e15`` -> ``1000000000000000.0``), any
#: other at most 12 (two ``\uXXXX`` escapes outside the BMP).
ASCII_GROWTH = 6
WORST_GROWTH = 12

# (stream, signed) -> encoded size of a message with no transaction.
_BASE_SIZES = {}


def payload_bound(payload, txid):
    """An upper bound of the encoded size of an outbox entry's transaction.

    ``payload`` is the entry's stored JSON text (its ``changes`` and
    ``tables``), ``txid`` its transaction id; the bound holds however the
    payload was encoded.
    """
    growth = ASCII_GROWTH if payload.isascii() else WORST_GROWTH
    return growth * len(payload) + len(txid) + TX_OVERHEAD


def _base_size(stream, key):
    """Encoded size of a message of ``stream`` without transactions.

    With room for the largest ``first_seq``/``last_seq`` and an epoch;
    computed once per stream and signing.
    """
    signed = bool(key)
    size = _BASE_SIZES.get((stream, signed))
    if size is None:
        skeleton = wire.delta_message(stream, [{'seq': 2 ** 62}], {},
                                      key or 'x', epoch='0' * 32)
        size = _BASE_SIZES[(stream, signed)] = (
            wire.encoded_size(skeleton) + 32)
    return size


def _one_message(entries, base, limit, bounds):
    """The tables header when every entry surely fits one message, or None.

    :param bounds: per entry, an upper bound of its transaction's
        encoded size (:func:`payload_bound`).
    """
    tables = {}
    for _, _, headers in entries:
        for name, header in headers.items():
            known = tables.setdefault(name, header)
            if known is not header and known != header:
                return None
    if base + sum(bounds) + wire.encoded_size(tables) > limit:
        return None
    return tables


def _header_size(headers, names=None):
    return sum(wire.encoded_size({name: header})
               for name, header in headers.items()
               if names is None or name not in names)


def split_messages(entries, stream, key, limit, bounds=None):
    """Group transactions into messages of at most ``limit`` bytes.

    :param entries: ``[(ident, transaction, table headers)]`` in seq
        order.
    :param bounds: optional, per entry, an upper bound of its
        transaction's encoded size (:func:`payload_bound`): when they
        show that everything fits one message, the transactions are not
        encoded to be measured.
    :returns: ``[([(ident, transaction), ...], tables header), ...]``.
        A single transaction larger than ``limit`` gets a message of its
        own; a table whose header (schema version) changes mid-batch
        starts a new message.
    """
    base = _base_size(stream, key)
    if bounds is not None and entries:
        tables = _one_message(entries, base, limit, bounds)
        if tables is not None:
            return [([(ident, tx) for ident, tx, _ in entries], tables)]
    groups = []
    current, tables, size = [], {}, base
    for ident, tx, headers in entries:
        tx_size = wire.encoded_size(tx) + 1
        conflict = any(name in tables and tables[name] != header
                       for name, header in headers.items())
        extra = _header_size(headers, tables)
        if current and (conflict or size + tx_size + extra > limit):
            groups.append((current, tables))
            current, tables, size = [], {}, base
            extra = _header_size(headers)
        current.append((ident, tx))
        tables.update(headers)
        size += tx_size + extra
    if current:
        groups.append((current, tables))
    return groups


def publish_entries(publisher, metrics, stream, key, limit, entries,
                    epoch=None, bounds=None):
    """Publish numbered transactions as delta messages, in order.

    The one publishing loop of the relay and of direct delivery: split at
    ``limit`` bytes (:func:`split_messages`), sign with ``key``, publish,
    count. It stops at the first message the broker did not confirm.

    :param entries: ``[(ident, transaction, table headers)]`` in seq order.
    :param epoch: the stream's epoch, carried by every message.
    :param bounds: see :func:`split_messages`.
    :returns: ``(confirmed [(ident, transaction), ...], DeliveryError or
        None)``.
    """
    confirmed = []
    for group, tables in split_messages(entries, stream, key, limit,
                                        bounds):
        message = wire.delta_message(stream, [tx for _, tx in group],
                                     tables, key, epoch=epoch)
        try:
            publisher.publish(wire.EVENT_DELTA, message)
        except exceptions.DeliveryError as exc:
            return confirmed, exc
        confirmed.extend(group)
        metrics.messages_published.labels(stream).inc()
        metrics.deltas_published.labels(stream).inc(
            sum(len(tx['changes']) for _, tx in group))
    return confirmed, None
