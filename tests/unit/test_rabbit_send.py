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

"""The short way to RabbitMQ: when it is taken, what it sends."""

import json
import threading
from unittest import mock

import oslo_messaging
from oslo_messaging._drivers import common as rpc_common

from oslo_publish import publisher
from oslo_publish import rabbit_send
from tests import base


class _Conn(object):
    """The parts of oslo.messaging's rabbit Connection the sender uses."""

    def __init__(self, declared=True):
        self._connection_lock = threading.Lock()
        self._producer = mock.Mock()
        self.channel = object()
        self.kombu_compression = None
        self._declared_exchanges = {'ex'} if declared else set()
        self._declared_queues = {('ex', 'top.info')} if declared else set()


class _Driver(object):

    def __init__(self, conn):
        self._default_exchange = 'ex'
        self.conn = conn

    def _get_connection(self, purpose, retry=None):
        context = mock.MagicMock()
        context.__enter__.return_value = context
        context.connection = self.conn
        return context


class TestRabbitSender(base.TestCase):

    def test_not_rabbit_means_no_sender(self):
        """fake:// (any other driver) always goes through the driver."""
        self.conf.set_override('transport_url', 'fake:///')
        transport = oslo_messaging.get_notification_transport(self.conf)
        self.addCleanup(transport.cleanup)
        self.assertIsNone(rabbit_send.for_transport(transport))
        pub = publisher.Publisher(self.conf, transport, 's')
        self.assertIsNone(pub.sender)

    def test_body_is_the_messagingv2_envelope(self):
        """The body decodes like oslo.messaging's, with a unique id."""
        message = {'event_type': 'e', 'payload': {'a': [1, 'x']}}
        body = json.loads(rabbit_send.RabbitSender.body(message))
        inner = rpc_common.deserialize_msg(body)
        self.assertEqual('2.0', body['oslo.version'])
        self.assertEqual(message, {k: v for k, v in inner.items()
                                   if k != '_unique_id'})
        self.assertEqual(32, len(inner['_unique_id']))
        self.assertNotIn('_unique_id', message)

    def test_publishes_on_a_declared_connection(self):
        """Exchange and queue declared: one publish, confirmed."""
        conn = _Conn()
        sender = rabbit_send.RabbitSender(_Driver(conn), 'send')
        self.assertTrue(sender.send('top.info', {'x': 1}))
        publish = conn._producer.publish
        self.assertEqual(1, publish.call_count)
        kwargs = publish.call_args.kwargs
        self.assertEqual(('ex', 'top.info', 'application/json'),
                         (kwargs['exchange'], kwargs['routing_key'],
                          kwargs['content_type']))
        self.assertEqual((1, 0), (sender.sent, sender.declined))

    def test_declines_before_the_driver_declared(self):
        """Nothing declared on that connection yet: the driver sends."""
        conn = _Conn(declared=False)
        sender = rabbit_send.RabbitSender(_Driver(conn), 'send')
        self.assertFalse(sender.send('top.info', {'x': 1}))
        conn._producer.publish.assert_not_called()
        self.assertEqual((0, 1), (sender.sent, sender.declined))

    def test_declines_after_a_failure(self):
        """A failing publish is declined, never raised."""
        conn = _Conn()
        conn._producer.publish.side_effect = OSError('gone')
        sender = rabbit_send.RabbitSender(_Driver(conn), 'send')
        self.assertFalse(sender.send('top.info', {'x': 1}))
        self.assertEqual((0, 1), (sender.sent, sender.declined))

    def test_publisher_uses_the_driver_when_declined(self):
        """Declined: the same notification goes through the driver."""
        transport = mock.Mock()
        pub = publisher.Publisher(self.conf, transport, 's')
        pub.sender = mock.Mock()
        pub.sender.send.return_value = False
        pub.publish('ev', {'p': 1})
        sent = transport._send_notification.call_args
        self.assertEqual(pub.sender.send.call_args.args[1], sent.args[2])
        pub.sender.send.return_value = True
        pub.publish('ev', {'p': 2})
        self.assertEqual(1, transport._send_notification.call_count)
