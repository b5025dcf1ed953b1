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

"""Both receivers of the consumer on real RabbitMQ, across a broker restart.

The broker is a private RabbitMQ node (``base.RabbitNodeFixture``):
``rabbitmqctl stop_app`` while the host writes drops every connection;
the driver reconnects and the consumer converges to the host's rows,
acknowledging only what it persisted.
"""

from tests import base
from tests.functional import test_consumer_e2e


class _BrokerRestart(test_consumer_e2e._Base):

    HOST_BACKEND = 'postgresql'
    STATE_BACKEND = 'postgresql'
    RECEIVER = None

    def setUp(self):
        super().setUp()
        self.conf.set_override('receiver', self.RECEIVER, 'consumer')

    def transport_fixture(self):
        self.node = self.useFixture(base.RabbitNodeFixture())
        return base.TransportFixture(self.conf, url=self.node.url)

    def test_broker_restart_mid_stream_converges(self):
        self.host.command('preload', rows=20)
        consumer = self.consumer()
        self.assertTrue(consumer.wait_synced(60))
        self.assertEqual(self.RECEIVER, consumer.driver.listener.receiver)
        self.host.command('write', tx=400, writers=2, seed=7)
        base.wait_for(lambda: (consumer.status()[0]['applied_seq'] or 0)
                      >= 20, 60, message='nothing applied before the '
                      'broker stopped')
        self.addCleanup(self.node.start_app)
        self.node.stop_app()
        self.node.start_app()
        self.settle()
        self.assertConverges(consumer, timeout=120)
        self.wait_caught_up(consumer, 60)


class TestPollReceiverBrokerRestart(_BrokerRestart, base.TestCase):
    RECEIVER = 'poll'


class TestListenerReceiverBrokerRestart(_BrokerRestart, base.TestCase):
    RECEIVER = 'listener'
