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

"""The ``oslo_publish`` driver: follows published streams on the bus.

For each of ``[consumer] streams`` one reconciler, fed by the service's
notification listener (:mod:`consumer.listener`) and pulling snapshots
from the stream's snapshot server (:mod:`consumer.source`). The listener
starts before the reconcilers, so deltas published while the initial
snapshot is read wait in the reconciler's buffer.
"""

import oslo_messaging as messaging
from oslo_log import log

from consumer.drivers import base
from consumer import exceptions
from consumer import listener as listener_mod
from consumer import reconciler as reconciler_mod
from consumer import source as source_mod
from consumer import verify

LOG = log.getLogger(__name__)


def batch_limit(conf):
    """Most messages of one intake batch.

    ``[consumer] max_batch_messages``, and at most half of the listener
    threads: each thread holds its message until it is persisted, so
    while one batch waits for the state store the other half of the
    threads carries the next batch (verify and apply overlap the write).
    """
    return max(1, min(conf.consumer.max_batch_messages,
                      conf.consumer.listener_threads // 2))


class PushDriver(base.Driver):
    """Follows ``[consumer] streams`` published by oslo_publish hosts."""

    name = 'oslo_publish'
    fetcher = 'snapshot'

    def __init__(self, conf, cache, state, dispatcher, metrics,
                 notifications=None, transport=None, rpc_transport=None):
        super().__init__(conf, cache, state, dispatcher, metrics,
                         notifications, transport)
        streams = list(conf.consumer.streams)
        if not streams:
            raise exceptions.ConfigError('streams', streams,
                                         'follow at least one stream')
        listener_mod.prepare_transport_conf(conf)
        self._own_transport = transport is None
        if transport is None:
            transport = messaging.get_notification_transport(conf)
            self.transport = transport
        # An RPC transport given by the caller is the caller's to clean up
        # (the demo shares one in-process fake:// driver with the host).
        self._own_rpc_transport = rpc_transport is None
        self._rpc_transport = (rpc_transport or
                               messaging.get_rpc_transport(conf))
        tables = list(conf.consumer.tables) or None
        for stream in streams:
            source = source_mod.RPCSnapshotSource(
                conf, stream, transport=self._rpc_transport)
            self.reconcilers[stream] = reconciler_mod.Reconciler(
                conf, stream, source, cache, state, dispatcher, metrics,
                collector=self.name, fetcher=self.fetcher, tables=tables)
        self.verifier = verify.Verifier(conf, streams, metrics)
        self.endpoint = listener_mod.Endpoint(
            self.verifier, self.reconcilers, metrics,
            notifications=notifications,
            allowed_publishers=conf.consumer.allowed_publishers,
            ack_timeout=conf.consumer.ack_timeout,
            max_batch=batch_limit(conf))
        self.listener = listener_mod.Listener(
            conf, transport, self.endpoint, self.reconcilers, metrics)

    def start(self):
        self.listener.start()
        for reconciler in self.reconcilers.values():
            reconciler.start()

    def stop(self):
        self.listener.stop()
        for reconciler in self.reconcilers.values():
            reconciler.stop()
        if self._own_rpc_transport:
            self._rpc_transport.cleanup()
        if self._own_transport:
            self.transport.cleanup()
