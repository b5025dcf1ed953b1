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

"""The datasource driver base class.

The Congress "delta-driven datasource driver" and the Watcher "cluster
model collector" in one small interface: a driver keeps the cache (and
the state store) in line with a source, through one
:class:`consumer.reconciler.Reconciler` per stream. Drivers are loaded by
name from the ``consumer.drivers`` entry-point namespace
(``[consumer] driver``) and built with the keyword arguments of
:class:`Driver`.
"""

import time

from oslo_log import log

LOG = log.getLogger(__name__)

NAMESPACE = 'consumer.drivers'


class Driver(object):
    """Base class of datasource drivers.

    :param conf: ConfigOpts with the consumer options.
    :param cache: the :class:`consumer.cache.Cache` to keep.
    :param state: the :class:`consumer.state.StateStore`.
    :param dispatcher: the :class:`consumer.handlers.Dispatcher`.
    :param metrics: a :class:`consumer.metrics.ConsumerMetrics`.
    :param notifications: a
        :class:`consumer.notifications.NotificationRouter` or None.
    :param transport: an oslo.messaging transport (drivers that use the
        bus build one from ``conf`` when None).
    """

    #: Driver name; the ``collector`` of its state-store keys.
    name = None

    def __init__(self, conf, cache, state, dispatcher, metrics,
                 notifications=None, transport=None):
        self.conf = conf
        self.cache = cache
        self.state = state
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.notifications = notifications
        self.transport = transport
        #: stream -> Reconciler, filled by subclasses before start().
        self.reconcilers = {}

    def start(self):
        """Start following the source (non-blocking)."""
        raise NotImplementedError

    def stop(self):
        """Stop; every applied position is already durable."""
        raise NotImplementedError

    def _wait_all(self, wait, timeout):
        """``wait(reconciler, seconds left)`` for every stream, one deadline.

        True once each returned True; False as soon as one did not.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        for reconciler in self.reconcilers.values():
            left = None if deadline is None else max(
                deadline - time.monotonic(), 0.0)
            if not wait(reconciler, left):
                return False
        return True

    def wait_synced(self, timeout=None):
        """True once every stream is synced, False after ``timeout``."""
        return self._wait_all(lambda r, left: r.wait_synced(left), timeout)

    def wait_durable(self, timeout=None):
        """True once every stream is synced and durable, else False.

        Durable: what the stream showed when synced (its snapshot too)
        is in the state store. False after ``timeout``.
        """
        return self._wait_all(lambda r, left: r.wait_durable(left), timeout)

    @property
    def synced(self):
        return all(r.synced for r in self.reconcilers.values())

    def view(self):
        """The cache's current consistent, immutable view."""
        return self.cache.view()

    def add_handler(self, name, handler):
        """Register a change handler (see :mod:`consumer.handlers`)."""
        self.dispatcher.add(name, handler)

    def resync(self, stream=None, cause='manual'):
        """Request a resync of one stream (or all)."""
        for name, reconciler in self.reconcilers.items():
            if stream is None or name == stream:
                reconciler.resync(cause)

    def status(self):
        """List of per-stream status dicts."""
        return [r.status_info() for r in self.reconcilers.values()]
