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


"""Fuzzing of the verify/reconcile path (extends tests.unit.test_verify).

Every generated message goes through the listener endpoint of a synced
consumer (real verifier, reconciler, cache and SQLite state store; the
signing key set on both sides). Properties: nothing escapes the
listener; a rejected message changes neither the cache nor the state
store and is counted exactly once under a known reason; an accepted one
leaves a consistent consumer.

test_verify fuzzes random envelopes, top-level wrong types, deep and huge
payloads and empty replays; this module adds mutations anywhere inside a
valid message (re-signed or not), signature forgeries, format versions,
unknown streams and tables, out-of-window sequence numbers, replays of
real earlier messages and deep or huge column values.

Long mode: ``OSLO_PUBLISH_FUZZ_LONG=1`` (or ``OSLO_PUBLISH_TEST_FUZZ_LONG=1``,
which tox passes through) generates more than 10,000 messages; the
default keeps the module to a few seconds.
"""

import copy
import datetime
import os
import uuid

from hypothesis import given
from hypothesis import HealthCheck
from hypothesis import settings
from hypothesis import strategies as st
import oslo_messaging as messaging

from oslo_publish import wire
from tests.unit import test_verify

LONG = bool(os.environ.get('OSLO_PUBLISH_FUZZ_LONG') or
            os.environ.get('OSLO_PUBLISH_TEST_FUZZ_LONG'))
KEY = test_verify.KEY
PUBLISHER = test_verify.PUBLISHER
HANDLED = test_verify.HANDLED
#: outcome(): handled, or requeued while the consumer resyncs.
ANY_IF_RESYNC = object()
KNOWN_REASONS = frozenset((
    'oversized', 'malformed', 'unknown_version', 'unsigned',
    'bad_signature', 'unknown_publisher', 'unknown_stream',
    'unknown_table', 'replayed'))
#: Reasons a message whose signature no longer matches can get: the
#: cheaper checks (size, structure, version) run before the signature.
SIGNATURE_REASONS = frozenset(('bad_signature', 'unsigned', 'malformed',
                               'oversized', 'unknown_version'))


def examples(default, long):
    """Examples per property: ``long`` in the long mode."""
    return long if LONG else default


def _fuzz_settings(default, long):
    return settings(max_examples=examples(default, long), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


def _paths(obj, prefix=()):
    """Every path (tuple of keys/indexes) inside ``obj``."""
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list):
        items = enumerate(obj)
    else:
        return
    for key, value in items:
        if prefix == () and key == wire.SIGNATURE:
            continue
        yield prefix + (key,)
        yield from _paths(value, prefix + (key,))


def _deep(depth):
    value = 'bottom'
    for _ in range(depth):
        value = [value]
    return value


def _mutate(payload, path, kind, value):
    out = copy.deepcopy(payload)
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if kind == 'delete':
        del parent[last]
    elif kind == 'huge':
        parent[last] = 'x' * 5000
    elif kind == 'deep':
        parent[last] = _deep(80)
    elif kind == 'nan':
        parent[last] = float('nan')
    else:
        parent[last] = value
    return out


class FuzzTestCase(test_verify.VerifyTestCase):

    SIGNED = True

    def reasons(self):
        """``{reason: count}`` of consumer_rejected_total, all streams."""
        counts = {}
        for family in self.metrics.registry.collect():
            for sample in family.samples:
                if sample.name == 'consumer_rejected_total':
                    reason = sample.labels['reason']
                    counts[reason] = counts.get(reason, 0) + sample.value
        return counts

    def outcome(self, payload, publisher=PUBLISHER,
                event_type=wire.EVENT_DELTA, result=HANDLED):
        """Handle one message; return ``{reason: +n}`` (empty: accepted)."""
        before = self.reasons()
        got = self.endpoint.handle(publisher, event_type, payload)
        if got == messaging.NotificationResult.REQUEUE and \
                result == ANY_IF_RESYNC:
            # Valid, but it announces another schema version of a
            # table: held (not acknowledged) until the resync it
            # planned has run; the broker redelivers it meanwhile.
            self.assertEqual('resyncing', self.rec.status)
        elif result != ANY_IF_RESYNC:
            self.assertEqual(result, got)
        else:
            self.assertEqual(HANDLED, got)
        after = self.reasons()
        diff = {r: after[r] - before.get(r, 0) for r in after
                if after[r] != before.get(r, 0)}
        self.assertNotIn('error', diff)
        return diff

    def assertRejectedOnce(self, diff, allowed=KNOWN_REASONS):
        self.assertEqual(1, sum(diff.values()), diff)
        self.assertTrue(set(diff) <= allowed, diff)
        self.assertUnchanged()

    def rebase(self):
        """After an accepted message: finish any resync it planned."""
        self.tick()
        self.rec.poll()
        self.before = self.snapshot_of_consumer()

    def tick(self):
        """Let a second pass: resyncs are rate limited per minute."""
        self.clock.advance(1.0)

    def fresh(self, ident=None):
        """A valid signed delta at applied + 1 (the host is not changed)."""
        seq = self.rec.applied + 1
        ident = 10 ** 6 + seq if ident is None else ident
        tx = {'seq': seq, 'txid': uuid.uuid4().hex,
              'committed_at': datetime.datetime.now(
                  datetime.timezone.utc).isoformat(),
              'changes': [{'table': 'instances', 'op': wire.INSERT,
                           'key': [ident],
                           'after': {'id': ident, 'name': 'fz'}}]}
        return wire.delta_message(self.STREAM, [tx],
                                  self.host.header('instances'), key=KEY)


class TestMutations(FuzzTestCase):

    def test_other_schema_version_waits_for_its_resync(self):
        """A signed delta of another table version is held, not lost."""
        self.before = self.snapshot_of_consumer()
        payload = self.fresh()
        payload['tables']['instances']['version'] = 'another'
        wire.sign(payload, KEY)
        self.assertEqual({}, self.outcome(
            payload, result=messaging.NotificationResult.REQUEUE))
        self.assertEqual('resyncing', self.rec.status)

    @_fuzz_settings(25, 4500)
    @given(data=st.data(),
           kind=st.sampled_from(['wrong', 'wrong', 'delete', 'huge',
                                 'deep', 'nan']),
           resign=st.booleans())
    def test_mutations_anywhere_are_contained(self, data, kind, resign):
        """A valid message mutated anywhere is rejected or applied whole."""
        self.before = self.snapshot_of_consumer()
        payload = self.fresh()
        path = data.draw(st.sampled_from(list(_paths(payload))))
        value = data.draw(test_verify._wrong) if kind == 'wrong' else None
        mutated = _mutate(payload, path, kind, value)
        if resign:
            try:
                wire.sign(mutated, KEY)
            except (TypeError, ValueError):
                pass  # cannot be encoded canonically: stays unsigned
        diff = self.outcome(mutated, result=ANY_IF_RESYNC)
        if diff:
            allowed = KNOWN_REASONS
            if not resign and mutated != payload:
                allowed = SIGNATURE_REASONS
            self.assertRejectedOnce(diff, allowed)
        else:
            self.rebase()


class TestForgeries(FuzzTestCase):

    @_fuzz_settings(20, 2000)
    @given(signature=st.one_of(
        st.none(), st.just(''), st.text(max_size=80),
        st.binary(min_size=32, max_size=32).map(lambda b: b.hex()),
        st.integers(), st.lists(st.integers(), max_size=3),
        st.sampled_from(['other-key', KEY + ' ', KEY.upper(), ''])
        .map(lambda k: 'key:' + k)))
    def test_forged_signatures_are_rejected(self, signature):
        """Missing, random or other-key signatures never get through."""
        self.before = self.snapshot_of_consumer()
        payload = self.fresh()
        if isinstance(signature, str) and signature.startswith('key:'):
            other = signature[4:]
            signature = wire.signature_of(payload, other) if other else ''
        if signature is None:
            del payload[wire.SIGNATURE]
        else:
            payload[wire.SIGNATURE] = signature
        # A signature that is not even ASCII text is malformed.
        self.assertRejectedOnce(self.outcome(payload), frozenset(
            ('unsigned', 'bad_signature', 'malformed')))

    @_fuzz_settings(20, 1000)
    @given(other=st.integers(min_value=1, max_value=10 ** 6))
    def test_signature_of_another_message_is_rejected(self, other):
        """A genuine signature moved onto another body is refused."""
        self.before = self.snapshot_of_consumer()
        donor = self.fresh(ident=other)
        payload = self.fresh(ident=other + 1)
        payload[wire.SIGNATURE] = donor[wire.SIGNATURE]
        self.assertRejectedOnce(self.outcome(payload),
                                frozenset(('bad_signature',)))


class TestVersionsStreamsTables(FuzzTestCase):

    @_fuzz_settings(20, 1000)
    @given(fmt=st.one_of(
        st.tuples(st.integers(0, 10 ** 6), st.integers(0, 10 ** 6)).map(
            lambda mm: '%d.%d' % mm),
        st.text(max_size=12)))
    def test_format_versions(self, fmt):
        """Another major format is refused; a newer 1.x minor is applied."""
        self.before = self.snapshot_of_consumer()
        payload = self.fresh()
        payload['format'] = fmt
        wire.sign(payload, KEY)
        diff = self.outcome(payload)
        try:
            major = wire.parse_format(payload)[0]
        except wire.WireError:
            major = None
        if major == wire.FORMAT_MAJOR:
            self.assertEqual({}, diff)
            self.rebase()
        else:
            self.assertRejectedOnce(diff, frozenset(
                ('unknown_version', 'malformed')))

    @_fuzz_settings(20, 1000)
    @given(stream=st.text(min_size=1, max_size=30),
           own_publisher=st.booleans())
    def test_unknown_streams(self, stream, own_publisher):
        """Streams not followed are refused, whoever claims them."""
        if stream == self.STREAM:
            return
        self.before = self.snapshot_of_consumer()
        payload = self.fresh()
        payload['stream'] = stream
        wire.sign(payload, KEY)
        publisher = wire.publisher_id(stream) if own_publisher \
            else PUBLISHER
        self.assertRejectedOnce(
            self.outcome(payload, publisher=publisher),
            frozenset(('unknown_stream', 'unknown_publisher')))

    @_fuzz_settings(20, 1000)
    @given(table=st.text(min_size=1, max_size=30))
    def test_unknown_tables(self, table):
        """Tables missing from the snapshot are refused, then rechecked."""
        if table == 'instances':
            return
        self.before = self.snapshot_of_consumer()
        payload = self.fresh()
        payload['tables'] = {table: payload['tables']['instances']}
        payload['transactions'][0]['changes'][0]['table'] = table
        wire.sign(payload, KEY)
        self.assertRejectedOnce(self.outcome(payload),
                                frozenset(('unknown_table',)))
        self.rebase()


class TestSequences(FuzzTestCase):

    @_fuzz_settings(15, 500)
    @given(ahead=st.integers(min_value=1, max_value=2 ** 40))
    def test_out_of_window_sequences_never_apply(self, ahead):
        """A seq beyond the reorder window applies nothing; a resync heals.

        The message is not acknowledged either: nothing it carries is
        persisted, so it goes back to the broker.
        """
        self.before = self.snapshot_of_consumer()
        payload = self.fresh()
        seq = self.rec.applied + 10 + ahead  # reorder_window is 10
        payload['first_seq'] = payload['last_seq'] = seq
        payload['transactions'][0]['seq'] = seq
        wire.sign(payload, KEY)
        self.assertEqual({}, self.outcome(
            payload, result=messaging.NotificationResult.REQUEUE))
        self.assertUnchanged()
        self.tick()
        self.rec.poll()
        self.assertTrue(self.rec.synced)
        self.assertEqual(self.host.seq, self.rec.applied)
        self.assertEqual(
            self.host.tables['instances']['rows'],
            {k: dict(v) for k, v in
             self.cache.view().rows('instances').items()})
        self.before = self.snapshot_of_consumer()

    @_fuzz_settings(20, 1000)
    @given(picks=st.lists(st.integers(min_value=0, max_value=5),
                          min_size=1, max_size=6))
    def test_replayed_real_messages_change_nothing(self, picks):
        """Earlier genuine messages, replayed in any order, change nothing."""
        sent = []
        base_id = 10 ** 5 + self.host.seq * 10
        for i in range(3):
            sent.append(self.host.write('instances', wire.INSERT,
                                        {'id': base_id + i, 'name': 'r'}))
        sent.append(self.host.write('instances', wire.UPDATE,
                                    {'id': base_id, 'name': 'r2'}))
        sent.append(self.host.write('instances', wire.DELETE,
                                    {'id': base_id + 1}))
        sent.append(self.host.write('instances', wire.DELETE,
                                    {'id': base_id + 2}))
        for payload in sent:
            self.assertEqual({}, self.outcome(payload))
        self.before = self.snapshot_of_consumer()
        for pick in picks:
            self.assertRejectedOnce(self.outcome(sent[pick]),
                                    frozenset(('replayed',)))


class TestValues(FuzzTestCase):

    @_fuzz_settings(15, 500)
    @given(depth=st.integers(min_value=63, max_value=400),
           size=st.integers(min_value=4097, max_value=100000),
           where=st.sampled_from(['after', 'key']))
    def test_deep_and_huge_values_are_contained(self, depth, size, where):
        """Deep JSON values and huge strings in a signed change are refused."""
        self.before = self.snapshot_of_consumer()
        for value, reasons in (
                ({'__t': 'json', 'v': _deep(depth)}, ('malformed',)),
                ('y' * size, ('oversized',))):
            payload = self.fresh()
            change = payload['transactions'][0]['changes'][0]
            if where == 'after':
                change['after']['name'] = value
            else:
                change['key'] = [value]
            wire.sign(payload, KEY)
            self.assertRejectedOnce(self.outcome(payload),
                                    frozenset(reasons))
