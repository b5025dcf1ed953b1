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

"""Tests of wire format upgrades through the verifier.

The tests register an upgrade path from a made-up format 0: ``0.8``
names the transactions ``txs``, ``0.9`` renames them ``transactions``
and ``1.0`` is the current format.
"""

import copy

from consumer import upgrades
from oslo_publish import wire
from tests.unit import test_verify

HANDLED = test_verify.HANDLED
PUBLISHER = test_verify.PUBLISHER


def _from_08(message):
    message['transactions'] = message.pop('txs')
    message['format'] = '0.9'
    return message


def _from_09(message):
    message['format'] = '1.0'
    message.pop(wire.SIGNATURE, None)
    return message


class UpgradeTestCase(test_verify.VerifyTestCase):

    def setUp(self):
        super().setUp()
        upgrades.register('0.8', _from_08)
        self.addCleanup(upgrades.unregister, '0.8')
        upgrades.register('0.9', _from_09)
        self.addCleanup(upgrades.unregister, '0.9')

    def old_delta(self):
        """A not yet applied delta in format 0.8, signed as sent."""
        message = self.delta()
        message.pop(wire.SIGNATURE, None)
        message['format'] = '0.8'
        message['txs'] = message.pop('transactions')
        return wire.sign(message, self.host.key)

    def handle(self, payload):
        return self.endpoint.handle(PUBLISHER, wire.EVENT_DELTA, payload)


class TestUpgrades(UpgradeTestCase):

    def test_old_format_is_upgraded_step_by_step_and_applied(self):
        """A 0.8 message goes through 0.9 to 1.0 and is applied."""
        payload = self.old_delta()
        sent = copy.deepcopy(payload)
        self.assertEqual(HANDLED, self.handle(payload))
        self.assertEqual(sent, payload)
        self.assertEqual(self.host.seq, self.rec.applied)
        self.assertConverged(self.rec)

    def test_old_format_without_path_is_unknown_version(self):
        """An older major with no upgrade step is rejected, not applied."""
        payload = dict(self.delta(), format='0.5')
        self.assertRejected('unknown_version', payload)

    def test_newer_major_is_rejected_before_any_step(self):
        """A newer major is unknown_version even with steps registered."""
        self.assertRejected('unknown_version',
                            dict(self.delta(), format='2.0'))

    def test_step_that_does_not_upgrade_is_malformed(self):
        """A step returning the same version is a malformed message."""
        upgrades.register('0.7', lambda message: message)
        self.addCleanup(upgrades.unregister, '0.7')
        self.assertRejected('malformed', dict(self.delta(), format='0.7'))

    def test_upgraded_message_is_validated(self):
        """A message still malformed after its upgrade is rejected."""
        payload = self.old_delta()
        payload['txs'] = 'nonsense'
        self.assertRejected('malformed', wire.sign(
            {k: v for k, v in payload.items() if k != wire.SIGNATURE},
            self.host.key))

    def test_duplicate_registration_is_refused(self):
        """Only one step may read a given format."""
        self.assertRaises(ValueError, upgrades.register, '0.9', _from_09)


class TestSignedUpgrades(UpgradeTestCase):

    SIGNED = True

    def test_old_format_without_path_is_unknown_not_unsigned(self):
        """Without an upgrade path the reason is the version, signed or not."""
        payload = dict(self.delta(), format='0.5')
        payload.pop(wire.SIGNATURE)
        self.assertRejected('unknown_version', payload)

    def test_signature_is_checked_on_the_message_as_sent(self):
        """A signed 0.8 message is accepted; a forged one is not."""
        self.assertEqual(HANDLED, self.handle(self.old_delta()))
        self.assertEqual(self.host.seq, self.rec.applied)
        self.before = self.snapshot_of_consumer()
        forged = self.old_delta()
        forged['txs'][0]['changes'][0]['after']['name'] = 'forged'
        self.assertRejected('bad_signature', forged)
