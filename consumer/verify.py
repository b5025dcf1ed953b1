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

"""Verification of incoming messages, before anything touches cache or state.

:class:`Verifier` turns one notification ``(publisher_id, event_type,
payload)`` into a fully decoded :class:`Message` or raises
:class:`consumer.exceptions.Rejected` with one of these reasons (the
``reason`` label of ``consumer_rejected``):

``oversized``
    larger than ``[consumer] max_message_bytes``.
``malformed``
    not the wire format: wrong structure or types, too deeply nested, an
    unknown event type, a value that does not decode.
``unknown_version``
    a newer major format (a newer minor of format 1 is accepted), or an
    older one that no step of :mod:`consumer.upgrades` upgrades. An
    older message is signature-checked as received, then upgraded, then
    validated as the current format.
``unsigned`` / ``bad_signature``
    ``[consumer] signing_key`` is set and the signature is absent or wrong.
``unknown_publisher``
    ``publisher_id`` not allowed (``[consumer] allowed_publishers``, by
    default ``oslo_publish.<stream>`` of each followed stream).
``unknown_stream``
    a stream this consumer does not follow.

The reconciler adds ``unknown_table``, ``replayed`` and ``out_of_window``
(deltas numbered beyond what the host had given out when they arrived,
found at the next snapshot). Every value is
decoded here, so a bad value can never half-apply a batch later.
Rejections are logged with the reason and never with a secret.
"""

import collections
import datetime

from oslo_log import log

from consumer import exceptions
from consumer import upgrades
from oslo_publish import wire

LOG = log.getLogger(__name__)

MAX_DEPTH = 64
UNKNOWN_STREAM_LABEL = '-'


class Transaction(collections.namedtuple(
        'Transaction', 'seq txid committed_at changes')):
    """One decoded transaction: seq, txid, committed_at, changes.

    ``committed_at`` is an aware datetime or None; ``changes`` a tuple of
    :class:`oslo_publish.wire.Change`.
    """

    __slots__ = ()


class Message(collections.namedtuple(
        'Message', 'kind stream publisher_id first_seq last_seq tables '
                   'transactions epoch', defaults=(None,))):
    """A verified, decoded message.

    Deltas carry ``first_seq`` .. ``last_seq``, ``tables`` (the header:
    ``{table: {"pk": [...], "version": ...}}``, filtered to the mirrored
    tables) and ``transactions``. Heartbeats carry their seq in both
    ``first_seq`` and ``last_seq`` and no transactions. ``epoch`` is the
    stream epoch the message was numbered in (None: a format 1.0
    message, read as the consumer's current epoch).
    """

    __slots__ = ()

    @property
    def is_heartbeat(self):
        return self.kind == wire.KIND_HEARTBEAT


def _measure(payload, limit=MAX_DEPTH):
    """Walk ``payload`` once, level by level: ``(too_deep, size)``.

    ``too_deep`` is True when containers nest deeper than ``limit``.
    ``size`` is the length of the compact JSON text of ``payload`` with
    every character counted as one byte (exact for ASCII text, a lower
    bound otherwise), computed without encoding anything: the payload was
    decoded from the bus and is never encoded again.
    """
    size = 0
    level = [payload]
    depth = 1
    while level:
        if depth > limit:
            return True, size
        deeper = []
        push = deeper.append
        for item in level:
            if type(item) is dict:
                # braces; per member two quotes, a colon, a comma
                size += 1 + 4 * len(item) if item else 2
                for key in item:
                    size += len(key) if type(key) is str else len(str(key))
                values = item.values()
            else:
                size += 1 + len(item) if item else 2  # brackets, commas
                values = item
            for value in values:
                kind = type(value)
                if kind is str:
                    size += len(value) + 2
                elif kind is dict or kind is list or kind is tuple:
                    push(value)
                elif kind is int or kind is float:
                    size += len(repr(value))
                else:
                    size += 4  # true, false, null; validate refuses others
        level = deeper
        depth += 1
    return False, size


#: Value types that are their own wire encoding (finite floats are too,
#: but a float still goes through the checks: JSON also parses NaN).
_PLAIN = frozenset((str, int, bool, type(None)))
#: Key part types a decoded key may hold as they come out of JSON.
_KEY_PLAIN = frozenset((int, str))
_STR = frozenset((str,))


def _decode_row(data):
    """``wire.decode_row`` with a C-level fast path for plain rows.

    A row whose column names are text and whose values are all text,
    integers, booleans or nulls decodes to a copy of itself; any other
    row goes through :func:`oslo_publish.wire.decode_row` and its checks.
    """
    if type(data) is dict and _PLAIN.issuperset(map(type, data.values())) \
            and _STR.issuperset(map(type, data)):
        return dict(data)
    return wire.decode_row(data)


def _decode_key(data):
    """``wire.decode_key``; integer and text parts taken as they are."""
    if type(data) is list and data and \
            _KEY_PLAIN.issuperset(map(type, data)):
        return tuple(data)
    return wire.decode_key(data)


def _malformed(detail):
    return wire.WireError('malformed', detail)


def _take_change(change, tables, wanted):
    """Check one change as ``wire.validate`` does, then decode it.

    One pass over the change instead of a validation pass and a decoding
    pass (same rules, same ``malformed`` rejections). Returns the
    :class:`oslo_publish.wire.Change`, or None for a table not in
    ``wanted`` (a set, or None for every table): such a change is still
    checked, as the whole message is.
    """
    if not isinstance(change, dict):
        raise _malformed('change is not an object')
    table = change.get('table')
    if not isinstance(table, str) or table not in tables:
        raise _malformed('change names a table missing from the header')
    op = change.get('op')
    if op == wire.INVALIDATE:
        cause = change.get('cause')
        if not isinstance(cause, str) or not 0 < len(cause) <= 64:
            raise _malformed('invalidation without cause')
        if wanted is not None and table not in wanted:
            return None
        return wire.invalidation(table, cause)
    if op not in wire.OPERATIONS:
        raise _malformed('unknown operation %r' % (op,))
    key = change.get('key')
    if not isinstance(key, list) or len(key) != len(tables[table]['pk']):
        raise _malformed('key does not match the primary key of %s'
                         % table)
    after = change.get('after')
    before = change.get('before')
    if op != wire.DELETE and not isinstance(after, dict):
        raise _malformed('%s without after-image' % op)
    if op != wire.INSERT and not isinstance(before, dict):
        raise _malformed('%s without before-image' % op)
    changed = change.get('changed')
    if op == wire.UPDATE and not (
            isinstance(changed, list) and
            (_STR.issuperset(map(type, changed)) or
             all(isinstance(c, str) for c in changed))):
        raise _malformed('update without changed column list')
    if wanted is not None and table not in wanted:
        return None
    return wire.Change(
        table, op, _decode_key(key),
        _decode_row(after) if after is not None else None,
        _decode_row(before) if before is not None else None,
        tuple(changed or ()))


def _parse_time(text):
    if text is None:
        return None
    if not isinstance(text, str):
        raise wire.WireError('malformed', 'committed_at is not text')
    try:
        return datetime.datetime.fromisoformat(text)
    except ValueError:
        raise wire.WireError('malformed', 'bad committed_at') from None


class Verifier(object):
    """Checks and decodes messages of the followed ``streams``.

    :param conf: the ConfigOpts with the consumer options registered.
    :param streams: names of the followed streams.
    :param metrics: a :class:`consumer.metrics.ConsumerMetrics`.
    """

    def __init__(self, conf, streams, metrics):
        opts = conf.consumer
        self._streams = frozenset(streams)
        self._key = opts.signing_key
        self._max_bytes = opts.max_message_bytes
        self._tables = frozenset(opts.tables) if opts.tables else None
        self._publishers = frozenset(opts.allowed_publishers)
        #: Publishers accepted: the configured ones, else the owner of
        #: each followed stream (computed once, not per message).
        self._allowed = self._publishers or frozenset(
            wire.publisher_id(s) for s in self._streams)
        self._metrics = metrics

    def stream_label(self, stream):
        """Counter label for ``stream``: unknown names collapse to one."""
        if isinstance(stream, str) and stream in self._streams:
            return stream
        return UNKNOWN_STREAM_LABEL

    def reject(self, stream, reason, detail):
        """Count and log a rejection; return the exception to raise."""
        label = self.stream_label(stream)
        self._metrics.rejected.labels(stream=label, reason=reason).inc()
        LOG.warning('Rejected message of stream %s: %s (%s)',
                    label, reason, detail)
        return exceptions.Rejected(reason, detail)

    def verify(self, publisher_id, event_type, payload):
        """Return the decoded :class:`Message` or raise Rejected."""
        stream = payload.get('stream') if isinstance(payload, dict) \
            else None
        if not isinstance(stream, str):
            stream = None
        try:
            return self._verify(publisher_id, event_type, payload, stream)
        except wire.WireError as exc:
            raise self.reject(stream, exc.reason, exc.detail) from None
        except exceptions.Rejected as exc:
            raise self.reject(stream, exc.reason, exc.detail) from None
        except (TypeError, ValueError, KeyError, AttributeError,
                OverflowError, RecursionError) as exc:
            raise self.reject(stream, 'malformed',
                              type(exc).__name__) from None

    def _verify(self, publisher_id, event_type, payload, stream):
        if not isinstance(payload, dict):
            raise wire.WireError('malformed', 'payload is not an object')
        too_deep, size = _measure(payload)
        if too_deep:
            raise wire.WireError('malformed', 'nested too deeply')
        if size > self._max_bytes:
            raise exceptions.Rejected(
                'oversized', '%d bytes > %d' % (size, self._max_bytes))
        major, _minor = wire.parse_format(payload)
        if major > wire.FORMAT_MAJOR:
            raise exceptions.Rejected('unknown_version',
                                      'format %s' % payload['format'])
        signed = major < wire.FORMAT_MAJOR
        if signed and not upgrades.registered('%d.%d' % (major, _minor)):
            raise exceptions.Rejected('unknown_version',
                                      'format %s' % payload['format'])
        if signed:
            # The signature covers the message as it was sent.
            wire.check_signature(payload, self._key)
            payload = upgrades.upgrade(payload)
            if wire.parse_format(payload)[0] != wire.FORMAT_MAJOR:
                raise exceptions.Rejected('unknown_version',
                                          'format %s' % payload['format'])
        expected_kind = {wire.EVENT_DELTA: wire.KIND_DELTA,
                         wire.EVENT_HEARTBEAT: wire.KIND_HEARTBEAT}.get(
                             event_type) if isinstance(event_type, str) \
            else None
        if expected_kind is None:
            raise wire.WireError('malformed', 'unknown event type')
        # Without a key the changes are checked as they are decoded
        # (_take_change, same rules); with one, the whole message is
        # checked before its signature, as always.
        wire.validate(payload, changes=bool(self._key))
        if payload['kind'] != expected_kind:
            raise wire.WireError('malformed', 'kind does not match the '
                                 'event type')
        if not signed:
            wire.check_signature(payload, self._key)
        self._check_origin(publisher_id, stream)
        if expected_kind == wire.KIND_HEARTBEAT:
            seq = payload['seq']
            return Message(wire.KIND_HEARTBEAT, stream, publisher_id,
                           seq, seq, {}, (), wire.message_epoch(payload))
        return self._decode_delta(payload, stream, publisher_id)

    def _check_origin(self, publisher_id, stream):
        if publisher_id not in self._allowed:
            raise exceptions.Rejected(
                'unknown_publisher', 'publisher %r' % (publisher_id,))
        if stream not in self._streams:
            raise exceptions.Rejected('unknown_stream', 'not followed')
        if not self._publishers and publisher_id != wire.publisher_id(
                stream):
            raise exceptions.Rejected(
                'unknown_publisher', 'publisher does not own the stream')

    def _wanted(self, table):
        return self._tables is None or table in self._tables

    def _decode_delta(self, payload, stream, publisher_id):
        tables = {name: {'pk': list(info['pk']), 'version': info['version']}
                  for name, info in payload['tables'].items()
                  if self._wanted(name)}
        header = payload['tables']
        wanted = self._tables
        transactions = []
        for tx in payload['transactions']:
            txid = tx.get('txid')
            if txid is not None and not isinstance(txid, str):
                raise wire.WireError('malformed', 'txid is not text')
            changes = [_take_change(change, header, wanted)
                       for change in tx['changes']]
            if wanted is not None:
                changes = [change for change in changes
                           if change is not None]
            transactions.append(Transaction(
                tx['seq'], txid, _parse_time(tx.get('committed_at')),
                tuple(changes)))
        return Message(wire.KIND_DELTA, stream, publisher_id,
                       payload['first_seq'], payload['last_seq'], tables,
                       tuple(transactions), wire.message_epoch(payload))
