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

"""Change handlers: observers of the cache (add / update / delete).

The reconciler updates the state store, then the cache, then hands the
cache's :class:`consumer.cache.Event` list to :meth:`Dispatcher.dispatch`
("state is updated before handlers are called").

Failure policy: ``dispatch()`` never blocks and never raises because of a
handler. Every handler has its own bounded queue and thread, so a slow
handler only delays itself; when its queue is full, further events for it
are dropped, counted in ``consumer_handler_dropped`` and logged. A handler
that raises is logged and counted in ``consumer_handler_failures``; the
next event is delivered as usual. Handlers needing every event must keep
up, or rebuild from a cache view.

Handlers are plugins too: :func:`load_handlers` loads the names of
``[consumer] handlers`` from the ``consumer.handlers`` stevedore
namespace (``logging`` ships: :class:`LoggingHandler`).
"""

import queue
import threading
import time

from oslo_log import log
from stevedore import named

from consumer import cache
from consumer import metrics as consumer_metrics

LOG = log.getLogger(__name__)

NAMESPACE = 'consumer.handlers'

_STOP = object()


class ChangeHandler(object):
    """Base class of change handlers; every method is a no-op by default.

    Rows are read-only mappings owned by the cache; keys are primary-key
    tuples. Methods run on the handler's own thread, one event at a time,
    in the order the cache produced them.
    """

    #: Tables this handler wants; ``None`` means every table.
    tables = None

    def __init__(self, conf=None):
        self.conf = conf

    def on_add(self, table, key, row):
        """A row appeared."""

    def on_update(self, table, key, before, after):
        """A row changed from ``before`` to ``after``."""

    def on_delete(self, table, key, row):
        """A row vanished; ``row`` is its last known image."""


class LoggingHandler(ChangeHandler):
    """Logs every change at debug level (entry point ``logging``)."""

    def on_add(self, table, key, row):
        LOG.debug('add %s %r: %s', table, key, dict(row))

    def on_update(self, table, key, before, after):
        LOG.debug('update %s %r: %s -> %s', table, key, dict(before),
                  dict(after))

    def on_delete(self, table, key, row):
        LOG.debug('delete %s %r: %s', table, key, dict(row))


def _deliver(handler, event):
    if event.op == cache.ADD:
        handler.on_add(event.table, event.key, event.after)
    elif event.op == cache.UPDATE:
        handler.on_update(event.table, event.key, event.before, event.after)
    else:
        handler.on_delete(event.table, event.key, event.before)


class _Worker(object):
    """One handler, its bounded queue and the thread draining it."""

    def __init__(self, name, handler, queue_size, metrics):
        self.name = name
        self.handler = handler
        tables = getattr(handler, 'tables', None)
        #: frozenset of wanted tables, or None for all. Never changed.
        self.tables = frozenset(tables) if tables is not None else None
        #: Events waiting for the handler; bounded, so a stuck handler
        #: costs at most queue_size events of memory. The _STOP sentinel
        #: is the last item ever put.
        self.queue = queue.Queue(maxsize=queue_size)
        self._metrics = metrics
        self.thread = threading.Thread(
            target=self._run, name='consumer-handler-%s' % name,
            daemon=True)

    def wants(self, event):
        return self.tables is None or event.table in self.tables

    def _run(self):
        while True:
            event = self.queue.get()
            try:
                if event is _STOP:
                    return
                _deliver(self.handler, event)
            except Exception:
                self._metrics.handler_failures.labels(
                    handler=self.name).inc()
                LOG.exception('Change handler %s failed on %s of %s %r',
                              self.name, event.op, event.table, event.key)
            finally:
                self.queue.task_done()


class Dispatcher(object):
    """Fans cache events out to change handlers without ever blocking.

    :param metrics: a :class:`consumer.metrics.ConsumerMetrics` (a private
        one when None).
    :param queue_size: bound of each handler's queue, in events.
    """

    def __init__(self, metrics=None, queue_size=10000):
        self.metrics = metrics or consumer_metrics.ConsumerMetrics()
        self.queue_size = queue_size
        #: Guards _workers and _stopped. dispatch() only holds it to take
        #: a snapshot of the workers, never while queueing.
        self._lock = threading.Lock()
        #: name -> _Worker. Replaced (copy on write) under _lock, so
        #: dispatch() can iterate a snapshot without holding the lock.
        self._workers = {}
        #: True once stop() began; no handler is added or fed after it.
        self._stopped = False

    def add(self, name, handler):
        """Register ``handler`` under ``name`` and start its thread.

        :raises ValueError: when ``name`` is taken or the dispatcher is
            stopped.
        """
        worker = _Worker(name, handler, self.queue_size, self.metrics)
        with self._lock:
            if self._stopped:
                raise ValueError('dispatcher is stopped')
            if name in self._workers:
                raise ValueError('handler %s is already registered' % name)
            workers = dict(self._workers)
            workers[name] = worker
            self._workers = workers
            worker.thread.start()
        LOG.debug('Change handler %s registered', name)

    def names(self):
        """Names of the registered handlers."""
        return tuple(self._workers)

    def dispatch(self, events):
        """Queue ``events`` for every handler that wants them. Never blocks.

        :returns: number of events dropped because a queue was full.
        """
        if self._stopped or not events:
            return 0
        dropped_total = 0
        for worker in self._workers.values():
            dropped = 0
            for event in events:
                if not worker.wants(event):
                    continue
                try:
                    worker.queue.put_nowait(event)
                except queue.Full:
                    dropped += 1
            if dropped:
                dropped_total += dropped
                self.metrics.handler_dropped.labels(
                    handler=worker.name).inc(dropped)
                LOG.warning('Change handler %s is %d events behind: '
                            'dropped %d events', worker.name,
                            self.queue_size, dropped)
        return dropped_total

    def wait_idle(self, timeout=None):
        """Wait until every queued event was handled.

        :returns: True when idle, False when ``timeout`` ran out first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        for worker in self._workers.values():
            done = worker.queue.all_tasks_done
            with done:
                while worker.queue.unfinished_tasks:
                    remaining = None
                    if deadline is not None:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            return False
                    done.wait(remaining)
        return True

    def stop(self, timeout=10.0):
        """Let every handler drain its queue, then end the threads.

        Gives up on a handler that does not finish within ``timeout``
        seconds in total (its daemon thread is abandoned and logged).

        :returns: True when every thread ended.
        """
        with self._lock:
            self._stopped = True
            workers = list(self._workers.values())
        deadline = time.monotonic() + timeout
        clean = True
        for worker in workers:
            remaining = deadline - time.monotonic()
            try:
                worker.queue.put(_STOP, timeout=max(remaining, 0.001))
            except queue.Full:
                pass
            worker.thread.join(max(0.0, deadline - time.monotonic()))
            if worker.thread.is_alive():
                clean = False
                LOG.warning('Change handler %s did not finish within %ss; '
                            'abandoning it', worker.name, timeout)
        return clean


def load_handlers(conf, names=None):
    """Load handlers by name from the ``consumer.handlers`` namespace.

    Every plugin is called with ``conf=conf``. Names default to
    ``[consumer] handlers``; a name that cannot be loaded is an error.

    :returns: list of ``(name, handler)`` in the order of ``names``.
    :raises consumer.exceptions.ConfigError: for a missing or broken
        plugin.
    """
    from consumer import exceptions
    if names is None:
        names = list(conf.consumer.handlers)
    if not names:
        return []
    failures = []

    def _failed(manager, entrypoint, exc):
        failures.append((entrypoint.name, exc))

    manager = named.NamedExtensionManager(
        NAMESPACE, names, invoke_on_load=True,
        invoke_kwds={'conf': conf}, name_order=True,
        on_load_failure_callback=_failed,
        on_missing_entrypoints_callback=lambda missing: failures.extend(
            (name, 'no such plugin') for name in missing))
    if failures:
        name, reason = failures[0]
        raise exceptions.ConfigError('handlers', name,
                                     'cannot load handler: %s' % reason)
    return [(ext.name, ext.obj) for ext in manager]
