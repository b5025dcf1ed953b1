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

"""The consumer facade: configuration in, a synced cache out.

::

    consumer = service.Consumer(conf)
    consumer.start()
    consumer.wait_synced(timeout=60)
    view = consumer.view()
    view.rows('instances')

:class:`Consumer` wires ``conf`` to the state store, the cache (with
``[consumer] indexes``), the change-handler dispatcher and the
notification handlers (``[consumer] handlers``), and the driver
(``[consumer] driver``, loaded by stevedore from ``consumer.drivers``).
While running it writes each stream's status to the state store every
:data:`STATUS_INTERVAL` seconds for ``consumer-status``.
"""

import threading

from oslo_log import log
from stevedore import driver as stevedore_driver

from consumer import cache as cache_mod
from consumer.drivers import base as drivers_base
from consumer import exceptions
from consumer import gc_tenure
from consumer import handlers as handlers_mod
from consumer import metrics as metrics_mod
from consumer import notifications as notifications_mod
from consumer import state as state_mod

LOG = log.getLogger(__name__)

STATUS_INTERVAL = 1.0


def parse_indexes(entries):
    """``['instances.host', ...]`` -> ``{'instances': ['host']}``."""
    indexes = {}
    for entry in entries:
        table, sep, column = entry.partition('.')
        if not sep or not table or not column:
            raise exceptions.ConfigError('indexes', entry,
                                         'expected table.column')
        indexes.setdefault(table, []).append(column)
    return indexes


class Consumer(object):
    """A consumer service: driver + cache + state store + handlers.

    :param conf: ConfigOpts with the consumer options registered.
    :param metrics: a :class:`consumer.metrics.ConsumerMetrics`.
    :param transport: an oslo.messaging notification transport (the
        push driver builds one from ``conf`` when None).
    :param state: a :class:`consumer.state.StateStore` (default: from
        ``[consumer_database]``).
    :param driver_kwargs: extra keyword arguments for the driver.
    """

    def __init__(self, conf, metrics=None, transport=None, state=None,
                 driver_kwargs=None):
        self.conf = conf
        self.metrics = metrics or metrics_mod.ConsumerMetrics()
        self.state = state or state_mod.StateStore(conf)
        self._own_state = state is None
        self.cache = cache_mod.Cache(
            indexes=parse_indexes(conf.consumer.indexes))
        self.dispatcher = handlers_mod.Dispatcher(
            self.metrics, conf.consumer.handler_queue_size)
        notification_handlers = []
        for name, plugin in handlers_mod.load_handlers(conf):
            if isinstance(plugin, notifications_mod.NotificationHandler):
                notification_handlers.append((name, plugin))
            else:
                self.dispatcher.add(name, plugin)
        self.notifications = notifications_mod.NotificationRouter(
            notification_handlers, self.cache, self.dispatcher,
            self.metrics, conf.consumer.handler_queue_size)
        kwargs = dict(conf=conf, cache=self.cache, state=self.state,
                      dispatcher=self.dispatcher, metrics=self.metrics,
                      notifications=self.notifications or None,
                      transport=transport)
        kwargs.update(driver_kwargs or {})
        manager = stevedore_driver.DriverManager(
            drivers_base.NAMESPACE, conf.consumer.driver,
            invoke_on_load=True, invoke_kwds=kwargs)
        self.driver = manager.driver
        self._stopping = threading.Event()
        self._status_thread = None
        self._tenured = False

    def start(self, upgrade=True):
        """Start (non-blocking); ``upgrade`` first creates the schema."""
        if upgrade:
            self.state.upgrade()
        if self.conf.consumer.gc_tenure and not self._tenured:
            gc_tenure.install()
            self._tenured = True
        self.notifications.start()
        self.driver.start()
        self._status_thread = threading.Thread(
            target=self._status_loop, name='consumer-status', daemon=True)
        self._status_thread.start()

    def stop(self):
        """Stop cleanly: no applied position is lost."""
        self._stopping.set()
        # The status loop ends first: a write of its still in flight must
        # not land after the final "stopped" one (consumer-sync may write
        # that one itself when the driver's stop outlasts stop_timeout).
        if self._status_thread is not None:
            self._status_thread.join(10.0)
            self._status_thread = None
        self.driver.stop()
        self.write_status()
        self.notifications.stop()
        self.dispatcher.stop()
        if self._own_state:
            self.state.close()
        if self._tenured:
            self._tenured = False
            gc_tenure.uninstall()

    def wait_synced(self, timeout=None):
        """True once every stream is synced, False after ``timeout``."""
        return self.driver.wait_synced(timeout)

    def wait_durable(self, timeout=None):
        """True once every stream is synced and durable, else False.

        Durable: what the stream showed when synced is in the state
        store. False after ``timeout``.

        A stream is synced as soon as its snapshot is in the cache; the
        snapshot's rows reach the state store after that (see
        ``[consumer] snapshot_durable_before_synced``).
        """
        return self.driver.wait_durable(timeout)

    @property
    def synced(self):
        return self.driver.synced

    def view(self):
        """The cache's current consistent, immutable view."""
        return self.cache.view()

    def add_handler(self, name, handler):
        """Register a change handler."""
        self.dispatcher.add(name, handler)

    def register_migration(self, step):
        """Add a :class:`consumer.migrations.MigrationStep` (all streams).

        Runs after the steps of the ``consumer.migrations`` entry points
        and before the default step; call it before :meth:`start`.
        """
        for reconciler in self.driver.reconcilers.values():
            reconciler.add_migration_step(step)

    def resync(self, stream=None):
        """Request a manual resync of one stream (or all)."""
        self.driver.resync(stream, 'manual')

    def status(self):
        """List of per-stream status dicts."""
        return self.driver.status()

    def join_status(self, timeout):
        """Wait up to ``timeout`` for the status loop to end (stopping)."""
        thread = self._status_thread
        if thread is not None:
            thread.join(timeout)

    def write_status(self):
        """Write every stream's status to the state store."""
        for info in self.driver.status():
            counters = {k: v for k, v in info.items()
                        if k not in ('stream', 'state', 'last_error')}
            try:
                self.state.set_status(info['stream'], info['state'],
                                      info['last_error'], counters)
            except Exception as exc:  # noqa: status is best effort
                LOG.warning('Cannot write the status of stream %s: %s',
                            info['stream'], type(exc).__name__)

    def _status_loop(self):
        while not self._stopping.wait(STATUS_INTERVAL):
            self.write_status()
