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

"""Notification handlers: other notifications on the bus -> cache updates.

The Watcher idea: a service's native notifications (e.g. Nova's
``compute.instance.*``) keep parts of the model fresh. A plugin subclasses
:class:`NotificationHandler`, declares the ``publisher_id`` and
``event_type`` patterns (shell-style, :mod:`fnmatch`) it wants and maps a
notification to a list of :class:`oslo_publish.wire.Change`::

    class InstanceHandler(notifications.NotificationHandler):
        event_types = ('compute.instance.*.end',)

        def changes(self, publisher_id, event_type, payload):
            data = payload['nova_object.data']
            return [wire.Change('native_instances', wire.UPDATE,
                                (data['uuid'],), {...}, None, ())]

It is registered in the ``consumer.handlers`` entry-point namespace (the
same as change handlers) and named in ``[consumer] handlers``.

:class:`NotificationRouter` never blocks the listener: :meth:`offer`
matches and enqueues into a bounded queue (full -> dropped, counted in
``consumer_handler_dropped``); one worker thread calls the handlers,
applies their changes to the cache and dispatches the resulting events.
A failing handler is logged and counted, nothing else. These updates do
not go through the state store: use tables of their own, or accept that
the next resync of a mirrored table replaces them.
"""

import fnmatch
import queue
import threading

from oslo_log import log

LOG = log.getLogger(__name__)

_STOP = object()


class NotificationHandler(object):
    """Base class of notification handler plugins."""

    #: Shell-style patterns of accepted publisher ids.
    publishers = ('*',)
    #: Shell-style patterns of accepted event types (none: nothing).
    event_types = ()

    def __init__(self, conf=None):
        self.conf = conf

    def wants(self, publisher_id, event_type):
        """True if this handler maps ``(publisher_id, event_type)``."""
        if not isinstance(publisher_id, str) or \
                not isinstance(event_type, str):
            return False
        return any(fnmatch.fnmatchcase(publisher_id, p)
                   for p in self.publishers) and \
            any(fnmatch.fnmatchcase(event_type, p)
                for p in self.event_types)

    def changes(self, publisher_id, event_type, payload):
        """Return the list of :class:`oslo_publish.wire.Change` to apply."""
        return []


class NotificationRouter(object):
    """Routes notifications to handlers through a bounded queue.

    :param handlers: list of ``(name, NotificationHandler)``.
    :param cache: the :class:`consumer.cache.Cache` to update.
    :param dispatcher: the change-handler dispatcher for the events.
    :param metrics: a :class:`consumer.metrics.ConsumerMetrics`.
    :param queue_size: bound of the queue.
    """

    def __init__(self, handlers, cache, dispatcher, metrics,
                 queue_size=10000):
        self._handlers = list(handlers)
        self._cache = cache
        self._dispatcher = dispatcher
        self._metrics = metrics
        #: Notifications waiting for the worker; bounded.
        self._queue = queue.Queue(maxsize=queue_size)
        self._thread = None

    def __bool__(self):
        return bool(self._handlers)

    def start(self):
        if self._handlers and self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name='notification-handlers', daemon=True)
            self._thread.start()

    def stop(self, timeout=10.0):
        if self._thread is None:
            return
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            LOG.warning('Notification queue full at stop; abandoning it')
        self._thread.join(timeout)
        self._thread = None

    def wait_idle(self, timeout=None):
        """Block until every queued notification was processed."""
        import time
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if deadline is not None and time.monotonic() > deadline:
                return False
            with self._queue.all_tasks_done:
                self._queue.all_tasks_done.wait(0.05)
        return True

    def offer(self, publisher_id, event_type, payload, priority='info'):
        """Queue the notification if a handler wants it; never blocks.

        :returns: True when some handler wants it (even if dropped).
        """
        wanted = [(name, h) for name, h in self._handlers
                  if h.wants(publisher_id, event_type)]
        if not wanted:
            return False
        try:
            self._queue.put_nowait((wanted, publisher_id, event_type,
                                    payload))
        except queue.Full:
            for name, _h in wanted:
                self._metrics.handler_dropped.labels(handler=name).inc()
            LOG.warning('Notification queue full; dropped %s', event_type)
        return True

    def _run(self):
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                self._process(*item)
            finally:
                self._queue.task_done()

    def _process(self, wanted, publisher_id, event_type, payload):
        for name, handler in wanted:
            try:
                changes = list(handler.changes(publisher_id, event_type,
                                               payload) or ())
                events = self._cache.apply(changes)
            except Exception:  # noqa: a plugin must not stop the others
                self._metrics.handler_failures.labels(handler=name).inc()
                LOG.exception('Notification handler %s failed on %s',
                              name, event_type)
                continue
            self._metrics.notifications_handled.labels(handler=name).inc()
            if events:
                self._dispatcher.dispatch(events)
