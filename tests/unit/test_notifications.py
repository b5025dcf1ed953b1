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

"""Tests of notification handlers: native notifications -> cache updates."""

import threading

import oslo_messaging as messaging

from consumer import cache as cache_mod
from consumer import handlers
from consumer import listener
from consumer import metrics as metrics_mod
from consumer import notifications
from consumer import verify
from oslo_publish import wire
from tests import base


class InstanceHandler(notifications.NotificationHandler):
    """Maps Nova's instance notifications to a native_instances table."""

    publishers = ('nova-compute:*',)
    event_types = ('compute.instance.*.end',)

    def changes(self, publisher_id, event_type, payload):
        data = payload['nova_object.data']
        key = (data['uuid'],)
        if event_type == 'compute.instance.delete.end':
            return [wire.Change('native_instances', wire.DELETE, key, None,
                                {}, ())]
        row = {'uuid': data['uuid'], 'host': data['host']}
        return [wire.Change('native_instances', wire.INSERT, key, row,
                            None, ())]


class Broken(notifications.NotificationHandler):
    """Raises on every notification."""

    event_types = ('compute.*',)

    def changes(self, publisher_id, event_type, payload):
        raise RuntimeError('broken plugin')


class Gate(notifications.NotificationHandler):
    """Blocks until released: a slow plugin."""

    event_types = ('slow.*',)

    def __init__(self):
        super().__init__()
        self.release = threading.Event()

    def changes(self, publisher_id, event_type, payload):
        self.release.wait(30)
        return []


def _notification(event, uuid, host='c1'):
    return {'nova_object.data': {'uuid': uuid, 'host': host}}


class TestNotificationRouter(base.TestCase):

    def setUp(self):
        super().setUp()
        self.metrics = metrics_mod.ConsumerMetrics()
        self.cache = cache_mod.Cache()
        self.dispatcher = handlers.Dispatcher(self.metrics, 10)
        self.addCleanup(self.dispatcher.stop)

    def make(self, plugins, size=100):
        router = notifications.NotificationRouter(
            plugins, self.cache, self.dispatcher, self.metrics, size)
        router.start()
        self.addCleanup(router.stop)
        endpoint = listener.Endpoint(
            verify.Verifier(self.conf, ['nova'], self.metrics), {},
            self.metrics, notifications=router)
        return router, endpoint

    def test_matching_notifications_update_the_cache(self):
        """compute.instance.*.end notifications add and delete rows."""
        router, endpoint = self.make([('instances', InstanceHandler())])
        self.assertEqual(messaging.NotificationResult.HANDLED,
                         endpoint.handle('nova-compute:c1',
                                         'compute.instance.create.end',
                                         _notification('create', 'u1')))
        endpoint.handle('nova-compute:c1', 'compute.instance.create.end',
                        _notification('create', 'u2'))
        endpoint.handle('nova-compute:c1', 'compute.instance.delete.end',
                        _notification('delete', 'u1'))
        self.assertTrue(router.wait_idle(10))
        view = self.cache.view()
        self.assertEqual([('u2',)], list(view.rows('native_instances')))
        self.assertEqual(3, self.metrics.value(
            'consumer_notifications_handled_total', handler='instances'))

    def test_unmatched_notifications_are_rejected(self):
        """A notification no plugin wants is counted as unknown_publisher."""
        router, endpoint = self.make([('instances', InstanceHandler())])
        endpoint.handle('nova-api:a', 'compute.instance.create.end',
                        _notification('create', 'u1'))
        endpoint.handle('nova-compute:c1', 'compute.instance.create.start',
                        _notification('create', 'u1'))
        self.assertEqual(2, self.metrics.value(
            'consumer_rejected_total', stream='-',
            reason='unknown_publisher'))
        self.assertTrue(router.wait_idle(10))
        self.assertFalse(self.cache.view().has_table('native_instances'))

    def test_failing_plugin_is_counted_and_others_continue(self):
        """A raising plugin is counted; the other plugin still applies."""
        router, endpoint = self.make([('broken', Broken()),
                                      ('instances', InstanceHandler())])
        endpoint.handle('nova-compute:c1', 'compute.instance.create.end',
                        _notification('create', 'u9'))
        self.assertTrue(router.wait_idle(10))
        self.assertEqual(1, self.metrics.value(
            'consumer_handler_failures_total', handler='broken'))
        self.assertIsNotNone(self.cache.view().get('native_instances',
                                                   ('u9',)))

    def test_full_queue_drops_without_blocking(self):
        """A slow plugin fills the queue; offers never block, drops count."""
        gate = Gate()
        self.addCleanup(gate.release.set)
        router, endpoint = self.make([('slow', gate)], size=2)
        for i in range(6):
            self.assertEqual(messaging.NotificationResult.HANDLED,
                             endpoint.handle('x', 'slow.event', {'i': i}))
        self.assertGreaterEqual(self.metrics.value(
            'consumer_handler_dropped_total', handler='slow'), 3)
        gate.release.set()
        self.assertTrue(router.wait_idle(10))


class TestListenerTargets(base.TestCase):

    def test_exchanges_per_stream(self):
        """Listed streams use their exchange, the others control_exchange."""
        self.conf.set_override('streams', ['nova', 'neutron', 'cinder'],
                               'consumer')
        self.conf.set_override('exchanges', {'nova': 'nova',
                                             'cinder': 'nova'}, 'consumer')
        self.assertEqual(['nova', None], listener.exchanges(self.conf))

    def test_pool_defaults_to_host_name(self):
        """Without [consumer] pool the queue is consumer-<hostname>."""
        import socket
        self.assertEqual('consumer-%s' % socket.gethostname(),
                         listener.pool_name(self.conf))
        self.conf.set_override('pool', 'mine', 'consumer')
        self.assertEqual('mine', listener.pool_name(self.conf))
