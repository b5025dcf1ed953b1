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


def _header_size(headers, names=None):
    return sum(wire.encoded_size({name: header})
               for name, header in headers.items()
               if names is None or name not in names)


def split_messages(entries, stream, key, limit):
    """Group transactions into messages of at most ``limit`` bytes.

    :param entries: ``[(ident, transaction, table headers)]`` in seq
        order.
    :returns: ``[([(ident, transaction), ...], tables header), ...]``.
        A single transaction larger than ``limit`` gets a message of its
        own; a table whose header (schema version) changes mid-batch
        starts a new message.
    """
    skeleton = wire.delta_message(stream, [{'seq': 2 ** 62}], {},
                                  key or 'x', epoch='0' * 32)
    base = wire.encoded_size(skeleton) + 32
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
                    epoch=None):
    """Publish numbered transactions as delta messages, in order.

    The one publishing loop of the relay and of direct delivery: split at
    ``limit`` bytes (:func:`split_messages`), sign with ``key``, publish,
    count. It stops at the first message the broker did not confirm.

    :param entries: ``[(ident, transaction, table headers)]`` in seq order.
    :param epoch: the stream's epoch, carried by every message.
    :returns: ``(confirmed [(ident, transaction), ...], DeliveryError or
        None)``.
    """
    confirmed = []
    for group, tables in split_messages(entries, stream, key, limit):
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
