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

"""Tests of bad input: every rejection reason, and fuzzing.

The fuzz tests feed generated messages through the listener endpoint
(verify -> reconcile) of a synced consumer and check that nothing
escapes, that neither the cache nor the state store changes, and that
every message is counted by reason. ``CONSUMER_FUZZ_EXAMPLES`` sets the
number of examples per property (default 150; the long mode of the fault
harness uses 10000).
"""

import copy
import os

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import oslo_messaging as messaging

from consumer import listener
from consumer import verify
from oslo_publish import wire
from tests import base
from tests.unit import test_reconciler

EXAMPLES = int(os.environ.get('CONSUMER_FUZZ_EXAMPLES', '150'))
HANDLED = messaging.NotificationResult.HANDLED
KEY = 'sekrit-key'
PUBLISHER = wire.publisher_id('nova')

_scalars = (st.none() | st.booleans() | st.integers() |
            st.floats(allow_nan=False, allow_infinity=False) |
            st.text(max_size=20))
_json = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=4) |
    st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=25)
_wrong = _scalars | st.lists(_scalars, max_size=3) | st.dictionaries(
    st.text(max_size=5), _scalars, max_size=3)


class VerifyTestCase(test_reconciler.ReconcilerTestCase):

    SIGNED = False

    def setUp(self):
        super().setUp()
        self.conf.set_override('max_message_bytes', 4096, 'consumer')
        if self.SIGNED:
            self.conf.set_override('signing_key', KEY, 'consumer')
            self.host.key = KEY
        self.rec = self.synced()
        self.endpoint = listener.Endpoint(self.verifier,
                                          {self.STREAM: self.rec},
                                          self.metrics, ack_timeout=0.05)
        self.before = self.snapshot_of_consumer()

    def snapshot_of_consumer(self):
        return (self.cache.view().generation, self.rec.applied,
                {t: s.seq for t, s in self.state.load(
                    self.STREAM, 'oslo_publish', 'snapshot').items()},
                list(self.state.load_rows(self.STREAM, 'instances')))

    def assertUnchanged(self):
        self.assertEqual(self.before, self.snapshot_of_consumer())

    def rejected(self, reason, stream='nova'):
        return self.metrics.value('consumer_rejected_total', stream=stream,
                                  reason=reason)

    def total_rejected(self):
        total = 0
        for family in self.metrics.registry.collect():
            for sample in family.samples:
                if sample.name == 'consumer_rejected_total':
                    total += sample.value
        return total

    def assertRejected(self, reason, payload, publisher=PUBLISHER,
                       event_type=wire.EVENT_DELTA, stream='nova'):
        before = self.rejected(reason, stream)
        result = self.endpoint.handle(publisher, event_type, payload)
        self.assertEqual(HANDLED, result)
        self.assertEqual(before + 1, self.rejected(reason, stream))
        self.assertUnchanged()

    def delta(self):
        """A valid, not yet applied delta (the host keeps its change)."""
        return self.host.write('instances', wire.INSERT,
                               {'id': 100 + self.host.seq, 'name': 'n'})


class TestRejectionReasons(VerifyTestCase):

    def test_oversized(self):
        """A message above max_message_bytes is rejected as oversized."""
        payload = self.delta()
        payload['transactions'][0]['changes'][0]['after']['name'] = \
            'x' * 5000
        self.assertRejected('oversized', payload)

    def test_malformed_structures(self):
        """Broken structure, types and event types are malformed."""
        bad = []
        payload = self.delta()
        bad.append((['not', 'a', 'dict'], wire.EVENT_DELTA))
        broken = copy.deepcopy(payload)
        broken['first_seq'] = 'one'
        bad.append((broken, wire.EVENT_DELTA))
        broken = copy.deepcopy(payload)
        broken['transactions'][0]['changes'][0]['op'] = 'upsert'
        bad.append((broken, wire.EVENT_DELTA))
        bad.append((payload, 'oslo_publish.unknown'))
        bad.append((payload, wire.EVENT_HEARTBEAT))
        bad.append((self.host.heartbeat(), wire.EVENT_DELTA))
        nested = copy.deepcopy(payload)
        deep = []
        nested['extra'] = deep
        for _ in range(200):
            deep.append([])
            deep = deep[0]
        bad.append((nested, wire.EVENT_DELTA))
        for item, event_type in bad:
            self.assertRejected('malformed', item, event_type=event_type,
                                stream='nova' if isinstance(item, dict)
                                else '-')

    def test_bad_value_never_half_applies_a_batch(self):
        """One undecodable value rejects the whole batch before applying."""
        tx1 = self.host.commit(self.host.change(
            'instances', wire.INSERT, {'id': 200, 'name': 'good'}))
        tx2 = self.host.commit(self.host.change(
            'instances', wire.INSERT, {'id': 201, 'name': 'bad'}))
        tx2['changes'][0]['after']['name'] = {'__t': 'datetime',
                                              'v': 'not a time'}
        self.assertRejected('malformed', self.host.message([tx1, tx2]))
        self.assertIsNone(self.cache.view().get('instances', (200,)))

    def test_unknown_version(self):
        """A newer major format is rejected; a newer minor is accepted."""
        payload = self.delta()
        newer = dict(payload, format='2.0')
        self.assertRejected('unknown_version', newer)
        minor = dict(payload, format='1.7')
        self.assertEqual(HANDLED, self.endpoint.handle(
            PUBLISHER, wire.EVENT_DELTA, minor))
        self.assertEqual(self.host.seq, self.rec.applied)

    def test_unknown_publisher(self):
        """Another publisher, or one not owning the stream, is refused."""
        self.assertRejected('unknown_publisher', self.delta(),
                            publisher='oslo_publish.cinder')
        self.assertRejected('unknown_publisher', {'event': 'x'},
                            publisher='compute.host1',
                            event_type='compute.instance.create.end',
                            stream='-')

    def test_allowed_publishers_option(self):
        """Only the configured publisher ids are accepted when set."""
        self.conf.set_override('allowed_publishers', ['relay.nova'],
                               'consumer')
        self.endpoint = listener.Endpoint(
            verify_module().Verifier(self.conf, ['nova'], self.metrics),
            {self.STREAM: self.rec}, self.metrics,
            allowed_publishers=['relay.nova'])
        payload = self.delta()
        self.assertRejected('unknown_publisher', payload)
        self.assertEqual(HANDLED, self.endpoint.handle(
            'relay.nova', wire.EVENT_DELTA, payload))
        self.assertEqual(self.host.seq, self.rec.applied)

    def test_unknown_stream(self):
        """A stream the consumer does not follow is refused."""
        other = self.host.write('instances', wire.INSERT,
                                {'id': 300, 'name': 'other'})
        other['stream'] = 'glance'
        self.conf.set_override('allowed_publishers', [PUBLISHER,
                                                      'oslo_publish.glance'],
                               'consumer')
        self.endpoint = listener.Endpoint(
            verify_module().Verifier(self.conf, ['nova'], self.metrics),
            {self.STREAM: self.rec}, self.metrics)
        self.assertRejected('unknown_stream', other,
                            publisher='oslo_publish.glance', stream='-')

    def test_unknown_table(self):
        """A table the snapshot did not contain is refused."""
        self.host.add_table('secrets')
        self.assertRejected('unknown_table', self.host.write(
            'secrets', wire.INSERT, {'id': 1, 'name': 's'}))

    def test_replayed(self):
        """A message at or below the applied position changes nothing."""
        payload = self.delta()
        self.assertEqual(HANDLED, self.endpoint.handle(
            PUBLISHER, wire.EVENT_DELTA, payload))
        self.before = self.snapshot_of_consumer()
        self.assertRejected('replayed', payload)

    def test_state_store_outage_requeues(self):
        """With the state store down the message is requeued, not lost."""
        payload = self.delta()
        with self.state.engine.begin() as conn:
            conn.exec_driver_sql('ALTER TABLE consumer_rows RENAME TO away')
        self.assertEqual(messaging.NotificationResult.REQUEUE,
                         self.endpoint.handle(PUBLISHER, wire.EVENT_DELTA,
                                              payload))
        # Nothing persisted: the stored position did not move.
        self.assertEqual(self.before[2], {t: s.seq for t, s in self.state.load(
            self.STREAM, 'oslo_publish', 'snapshot').items()})
        with self.state.engine.begin() as conn:
            conn.exec_driver_sql('ALTER TABLE away RENAME TO consumer_rows')
        self.assertEqual(HANDLED, self.endpoint.handle(
            PUBLISHER, wire.EVENT_DELTA, payload))
        self.assertEqual(self.host.seq, self.rec.applied)

    def test_messages_are_routed_to_their_stream(self):
        """Each followed stream's messages reach its own reconciler."""
        other = test_reconciler.fakehost.FakeHost('glance')
        other.add_table('images')
        rec = self.make_other(other)
        endpoint = listener.Endpoint(
            verify_module().Verifier(self.conf, ['nova', 'glance'],
                                     self.metrics),
            {'nova': self.rec, 'glance': rec}, self.metrics)
        endpoint.handle(wire.publisher_id('glance'), wire.EVENT_DELTA,
                        other.write('images', wire.INSERT,
                                    {'id': 1, 'name': 'img'}))
        endpoint.handle(PUBLISHER, wire.EVENT_DELTA, self.delta())
        self.assertEqual(1, rec.applied)
        self.assertEqual(self.host.seq, self.rec.applied)

    def make_other(self, host):
        from consumer import reconciler
        from consumer import source as source_mod
        rec = reconciler.Reconciler(
            self.conf, host.stream,
            source_mod.RPCSnapshotSource(self.conf, host.stream,
                                         caller=host.caller),
            self.cache, self.state, self.dispatcher, self.metrics,
            clock=self.clock)
        rec.start(run_thread=False)
        self.addCleanup(rec.stop)
        rec.poll()
        return rec

    def test_tables_filter_strips_other_tables(self):
        """Changes of tables outside [consumer] tables are never applied."""
        self.conf.set_override('tables', ['instances'], 'consumer')
        verifier = verify_module().Verifier(self.conf, ['nova'],
                                            self.metrics)
        self.host.add_table('hosts')
        tx = self.host.commit(
            self.host.change('hosts', wire.INSERT, {'id': 1, 'name': 'h'}),
            self.host.change('instances', wire.INSERT,
                             {'id': 400, 'name': 'i'}))
        message = verifier.verify(PUBLISHER, wire.EVENT_DELTA,
                                  self.host.message([tx]))
        self.assertEqual(['instances'], list(message.tables))
        self.assertEqual(['instances'], [c.table for c in
                                         message.transactions[0].changes])


class TestSizeMeasure(VerifyTestCase):

    def test_size_equals_the_json_length_for_ascii(self):
        """The walked size equals the compact JSON length of ASCII data."""
        for payload in (self.delta(), self.host.heartbeat(), {},
                        {'a': [1, -2.5, 'x', None, True, {}, []],
                         'b': {'c': [[]], 'd': 10 ** 30}}):
            self.assertEqual((False, wire.encoded_size(payload)),
                             verify._measure(payload))

    def test_limit_is_exact_in_bytes(self):
        """A message of exactly max_message_bytes passes; one more fails."""
        payload = self.delta()
        name = payload['transactions'][0]['changes'][0]['after']
        name['name'] = ''
        name['name'] = 'x' * (4096 - wire.encoded_size(payload))
        self.assertEqual(4096, verify._measure(payload)[1])
        self.verifier.verify(wire.publisher_id(self.STREAM),
                             wire.EVENT_DELTA, payload)
        name['name'] += 'x'
        self.assertRejected('oversized', payload)


class TestSignatures(VerifyTestCase):

    SIGNED = True

    def test_signed_message_is_applied(self):
        """A correctly signed message is applied."""
        self.assertEqual(HANDLED, self.endpoint.handle(
            PUBLISHER, wire.EVENT_DELTA, self.delta()))
        self.assertEqual(self.host.seq, self.rec.applied)

    def test_unsigned(self):
        """Without a signature the message is rejected as unsigned."""
        payload = self.delta()
        del payload['signature']
        self.assertRejected('unsigned', payload)

    def test_bad_signature(self):
        """A signature by another key, or a tampered body, is refused."""
        payload = self.delta()
        forged = wire.sign(dict(payload), 'other-key')
        self.assertRejected('bad_signature', forged)
        tampered = copy.deepcopy(payload)
        tampered['transactions'][0]['changes'][0]['after']['name'] = 'evil'
        self.assertRejected('bad_signature', tampered)

    def test_key_is_never_logged(self):
        """Rejection logs never contain the signing key."""
        logger = self.useFixture(_log_fixture())
        payload = self.delta()
        payload['signature'] = 'ab' * 32
        self.endpoint.handle(PUBLISHER, wire.EVENT_DELTA, payload)
        self.assertIn('bad_signature', logger.output)
        self.assertNotIn(KEY, logger.output)


def verify_module():
    from consumer import verify
    return verify


def _log_fixture():
    import fixtures
    return fixtures.FakeLogger(level='DEBUG')


class TestFuzz(VerifyTestCase):

    SIGNED = True

    def _check(self, publisher, event_type, payload):
        before = self.total_rejected()
        result = self.endpoint.handle(publisher, event_type, payload)
        self.assertEqual(HANDLED, result)
        self.assertEqual(before + 1, self.total_rejected())
        self.assertEqual(0, self.rejected('error', '-'))

    @settings(max_examples=EXAMPLES, deadline=None)
    @given(publisher=st.one_of(st.just(PUBLISHER), st.text(max_size=20),
                               _wrong),
           event_type=st.one_of(st.sampled_from([wire.EVENT_DELTA,
                                                 wire.EVENT_HEARTBEAT]),
                                st.text(max_size=20), _wrong),
           payload=_json)
    def test_random_envelopes_are_contained(self, publisher, event_type,
                                            payload):
        """Random envelopes never escape, change nothing, are counted."""
        self._check(publisher, event_type, payload)
        self.assertUnchanged()

    @settings(max_examples=EXAMPLES, deadline=None)
    @given(field=st.sampled_from(['format', 'kind', 'stream', 'first_seq',
                                  'last_seq', 'tables', 'transactions',
                                  'signature', 'sent_at']),
           value=_wrong)
    def test_wrong_types_are_contained(self, field, value):
        """A valid message with one field replaced is rejected."""
        payload = self.host.message([self.host.commit(self.host.change(
            'instances', wire.INSERT, {'id': 10 ** 6, 'name': 'x'}))])
        del self.host.tables['instances']['rows'][(10 ** 6,)]
        self.host.seq -= 1
        if payload.get(field) == value:
            return
        payload[field] = value
        self._check(PUBLISHER, wire.EVENT_DELTA, payload)
        self.assertUnchanged()

    @settings(max_examples=max(EXAMPLES // 5, 10), deadline=None)
    @given(depth=st.integers(min_value=65, max_value=3000),
           size=st.integers(min_value=4097, max_value=200000))
    def test_deep_and_huge_are_contained(self, depth, size):
        """Deep nesting and huge payloads are refused, not crashed on."""
        payload = {'format': '1.0', 'kind': 'delta', 'stream': 'nova'}
        inner = payload
        for _ in range(depth):
            inner['n'] = {}
            inner = inner['n']
        self._check(PUBLISHER, wire.EVENT_DELTA, payload)
        huge = {'format': '1.0', 'kind': 'delta', 'stream': 'nova',
                'blob': 'x' * size}
        self._check(PUBLISHER, wire.EVENT_DELTA, huge)
        self.assertUnchanged()

    @settings(max_examples=EXAMPLES, deadline=None)
    @given(offset=st.integers(min_value=0, max_value=50))
    def test_replays_are_contained(self, offset):
        """Old, validly signed messages change nothing."""
        old = self.host.message([{'seq': max(self.rec.applied - offset, 0),
                                  'txid': 'x', 'committed_at': None,
                                  'changes': []}])
        self._check(PUBLISHER, wire.EVENT_DELTA, old)
        self.assertUnchanged()


def _reference(change, tables):
    """The two passes the one-pass decoder replaces.

    The checks of ``wire.validate``, then ``wire.decode_change``: the
    error type raised, or the decoded change.
    """
    try:
        wire._validate_change(change, tables)
        return wire.decode_change(change)
    except (wire.WireError, TypeError, ValueError, KeyError,
            AttributeError, OverflowError) as exc:
        return type(exc)


def _one_pass(change, tables, wanted=None):
    try:
        return verify._take_change(change, tables, wanted)
    except (wire.WireError, TypeError, ValueError, KeyError,
            AttributeError, OverflowError) as exc:
        return type(exc)


_TABLES = {'instances': {'pk': ['id'], 'version': 'v1'},
           'pairs': {'pk': ['a', 'b'], 'version': 'v1'}}
_FIELDS = ('table', 'op', 'key', 'after', 'before', 'changed', 'cause')


@st.composite
def _changes(draw):
    """A valid change of any kind, then maybe one field broken."""
    table = draw(st.sampled_from(['instances', 'pairs']))
    op = draw(st.sampled_from(['insert', 'update', 'delete', 'invalidate']))
    change = {'table': table, 'op': op}
    if op == 'invalidate':
        change['cause'] = draw(st.text(min_size=1, max_size=64))
    else:
        change['key'] = draw(st.lists(st.integers() | st.text(max_size=3),
                                      min_size=len(_TABLES[table]['pk']),
                                      max_size=len(_TABLES[table]['pk'])))
        row = st.dictionaries(st.text(max_size=4), _scalars, max_size=3)
        if op != 'delete':
            change['after'] = draw(row)
        if op != 'insert':
            change['before'] = draw(row)
        if op == 'update':
            change['changed'] = draw(st.lists(st.text(max_size=4),
                                              max_size=3))
    how = draw(st.sampled_from(['keep', 'replace', 'drop']))
    field = draw(st.sampled_from(_FIELDS))
    if how == 'replace':
        change[field] = draw(_wrong | st.sampled_from(
            ['instances', 'pairs', 'other', 'insert', 'update', 'delete',
             'invalidate']))
    elif how == 'drop':
        change.pop(field, None)
    return change


class TestOnePassDecoding(base.TestCase):
    """verify._take_change: wire.validate's rules, then the decoding."""

    @settings(max_examples=EXAMPLES * 4, deadline=None)
    @given(change=_changes() | _wrong)
    def test_same_as_validate_then_decode(self, change):
        """Same rejection (or same decoded change) as the two passes."""
        expected = _reference(change, _TABLES)
        got = _one_pass(change, _TABLES)
        if isinstance(expected, type):
            # Any refusal is counted as malformed by the verifier.
            self.assertIsInstance(got, type)
            self.assertTrue(issubclass(got, Exception))
        else:
            self.assertEqual(expected, got)

    def test_each_field_of_each_kind_broken(self):
        """Every field of every kind of change dropped or mistyped."""
        valid = [
            {'table': 'pairs', 'op': 'insert', 'key': [1, 'x'],
             'after': {'a': 1, 'b': 'x'}},
            {'table': 'instances', 'op': 'update', 'key': [1],
             'after': {'id': 1, 'n': 2}, 'before': {'id': 1, 'n': 1},
             'changed': ['n']},
            {'table': 'instances', 'op': 'delete', 'key': [1],
             'before': {'id': 1}},
            {'table': 'instances', 'op': 'invalidate', 'cause': 'bulk'}]
        wrong = [None, 1, 'x', [], [1], {}, {'a': []}, ['a', 1], 'x' * 65,
                 'other', 'insert', 'update', 'delete', 'invalidate']
        cases = 0
        for change in valid:
            self.assertEqual(_reference(change, _TABLES),
                             _one_pass(change, _TABLES))
            for field in _FIELDS:
                broken = dict(change)
                broken.pop(field, None)
                variants = [broken] + [dict(change, **{field: value})
                                       for value in wrong]
                for variant in variants:
                    expected = _reference(variant, _TABLES)
                    got = _one_pass(variant, _TABLES)
                    cases += 1
                    if isinstance(expected, type):
                        self.assertIsInstance(got, type, variant)
                    else:
                        self.assertEqual(expected, got, variant)
        self.assertEqual(4 * len(_FIELDS) * (1 + len(wrong)), cases)

    def test_unwanted_table_is_checked_not_decoded(self):
        """A filtered-out table's change is checked, then dropped."""
        good = {'table': 'pairs', 'op': 'insert', 'key': [1, 'x'],
                'after': {'a': 1, 'b': 'x'}}
        self.assertIsNone(verify._take_change(good, _TABLES,
                                              frozenset(['instances'])))
        bad = dict(good, key=[1])
        self.assertRaises(wire.WireError, verify._take_change, bad,
                          _TABLES, frozenset(['instances']))
        self.assertEqual(wire.decode_change(good),
                         verify._take_change(good, _TABLES, None))
