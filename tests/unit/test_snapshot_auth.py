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

"""Tests of the snapshot request authentication."""

from oslo_publish import snapshot_auth
from tests import base


class TestCheckRequest(base.TestCase):

    def check(self, auth, key='k', tables=('t',), now=None):
        return snapshot_auth.check_request(auth, key, 's', list(tables),
                                           now=now)

    def reason(self, *args, **kwargs):
        exc = self.assertRaises(snapshot_auth.AuthError, self.check,
                                *args, **kwargs)
        return exc.reason

    def test_signed_request_names_its_client(self):
        """A request signed with the host's key passes and names a client."""
        auth = snapshot_auth.request_auth('k', 's', ['t'], 'c1')
        self.assertEqual('c1', self.check(auth))

    def test_missing_or_wrong_auth_is_refused(self):
        """No auth, another key or no signature is refused with a reason."""
        self.assertEqual('unauthenticated', self.reason(None))
        self.assertEqual('bad_signature', self.reason(
            snapshot_auth.request_auth('other', 's', ['t'], 'c')))
        self.assertEqual('unsigned', self.reason(
            snapshot_auth.request_auth(None, 's', ['t'], 'c')))
        self.assertEqual('malformed', self.reason('not an object'))

    def test_auth_is_bound_to_stream_tables_and_time(self):
        """Auth of other tables, another stream or a stale time fails."""
        self.assertEqual('malformed', self.reason(
            snapshot_auth.request_auth('k', 's', ['other'], 'c')))
        self.assertEqual('malformed', self.reason(
            snapshot_auth.request_auth('k', 'x', ['t'], 'c')))
        old = snapshot_auth.request_auth('k', 's', ['t'], 'c', now=1000.0)
        self.assertEqual('expired', self.reason(
            old, now=1000.0 + snapshot_auth.MAX_SKEW + 1))

    def test_without_key_auth_only_names_the_client(self):
        """A host without a key accepts any auth (or none)."""
        self.assertIsNone(self.check(None, key=None))
        auth = snapshot_auth.request_auth(None, 's', ['t'], 'c')
        self.assertEqual('c', self.check(auth, key=None))

    def test_deadline_is_signed_and_tells_lateness(self):
        """The caller's deadline travels signed; lateness is measured."""
        auth = snapshot_auth.request_auth('k', 's', ['t'], 'c1', now=100.0,
                                          timeout=10.0)
        self.assertEqual(110.0, auth['deadline'])
        self.assertEqual('c1', self.check(auth, now=100.0))
        self.assertIsNone(snapshot_auth.seconds_late(auth, now=109.0))
        self.assertEqual(5.0, snapshot_auth.seconds_late(auth, now=115.0))
        auth['deadline'] = 1000.0  # moved on the bus
        self.assertEqual('bad_signature', self.reason(auth, now=100.0))

    def test_requests_without_deadline_are_never_late(self):
        """Older consumers send none; a malformed one is ignored."""
        auth = snapshot_auth.request_auth(None, 's', ['t'], 'c1', now=1.0)
        self.assertNotIn('deadline', auth)
        self.assertIsNone(snapshot_auth.seconds_late(auth, now=1e9))
        for bad in (True, 'soon', None, [1]):
            auth['deadline'] = bad
            self.assertIsNone(snapshot_auth.seconds_late(auth, now=1e9))
        self.assertIsNone(snapshot_auth.seconds_late(None))


class TestNonceCache(base.TestCase):

    def test_second_use_is_a_replay(self):
        """A nonce is accepted once, then refused as replayed."""
        cache = snapshot_auth.NonceCache()
        auth = snapshot_auth.request_auth('k', 's', [], 'c')
        cache.check_and_add(auth)
        exc = self.assertRaises(snapshot_auth.AuthError,
                                cache.check_and_add, auth)
        self.assertEqual('replayed', exc.reason)
        cache.check_and_add(snapshot_auth.request_auth('k', 's', [], 'c'))

    def test_old_nonces_are_forgotten(self):
        """Past its ttl the cache stays bounded (expired entries pruned)."""
        cache = snapshot_auth.NonceCache(ttl=10)
        for i in range(2000):
            cache.check_and_add({'nonce': 'n%d' % i}, now=float(i))
        self.assertLess(len(cache._seen), 1100)


class TestAuthError(base.TestCase):

    def test_carries_reason_and_detail(self):
        """The error names one reason word and a detail."""
        exc = snapshot_auth.AuthError('expired', 'too old')
        self.assertEqual(('expired', 'too old'), (exc.reason, exc.detail))
        self.assertIn('expired', str(exc))
