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

"""The publisher's short way to RabbitMQ, against the real broker."""

from unittest import mock

import oslo_messaging

from oslo_publish import publisher
from oslo_publish import wire
from tests import base
from tests.functional import delivery


class TestRabbitSend(base.TestCase):

    def setUp(self):
        super().setUp()
        self.tf = self.useFixture(base.TransportFixture(self.conf))
        self.conf.set_override('topics', [self.tf.topic], 'oslo_publish')
        self.transport = oslo_messaging.get_notification_transport(
            self.conf)
        self.addCleanup(self.transport.cleanup)
        self.receiver = self.useFixture(
            delivery.Receiver(self.transport, self.tf))
        self.stream = base.unique_name('s')
        self.pub = publisher.Publisher(self.conf, self.transport,
                                       self.stream)

    def _beats(self, first, count):
        for seq in range(first, first + count):
            self.pub.publish(wire.EVENT_HEARTBEAT,
                             wire.heartbeat_message(self.stream, seq))

    def _received(self, count):
        base.wait_for(lambda: len(self.receiver.messages) >= count,
                      message='%d messages' % count)
        return list(self.receiver.messages)

    def test_short_way_after_the_driver_declared(self):
        """The first send declares through the driver; later ones skip it."""
        self.assertIsNotNone(self.pub.sender)
        self._beats(1, 5)
        got = self._received(5)
        self.assertEqual([1, 2, 3, 4, 5], [p['seq'] for _e, p in got])
        self.assertEqual({wire.EVENT_HEARTBEAT}, {e for e, _p in got})
        self.assertEqual(1, self.pub.sender.declined)
        self.assertEqual(4, self.pub.sender.sent)

    def test_same_notification_either_way(self):
        """A listener gets the same event, publisher and payload."""
        message = wire.delta_message(
            self.stream, [{'seq': 1, 'txid': 't', 'committed_at': None,
                           'changes': []}], {}, epoch='e' * 32)
        self.pub.publish(wire.EVENT_DELTA, message)   # the driver
        self.pub.publish(wire.EVENT_DELTA, message)   # the short way
        got = self._received(2)
        self.assertEqual(1, self.pub.sender.sent)
        self.assertEqual(got[0], got[1])
        self.assertEqual((wire.EVENT_DELTA, message), got[1])

    def test_failure_falls_back_to_the_driver(self):
        """A failing short send is sent by the driver: nothing is lost."""
        self._beats(1, 1)
        self._received(1)
        with mock.patch.object(self.pub.sender, '_publish',
                               side_effect=OSError('boom')) as short:
            self._beats(2, 1)
        self.assertEqual(1, short.call_count)
        got = self._received(2)
        self.assertEqual([1, 2], [p['seq'] for _e, p in got])
        self.assertEqual(2, self.pub.sender.declined)
        self.assertEqual(0, self.pub.sender.sent)
