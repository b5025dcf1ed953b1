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


"""oslo.publish host middleware: change data capture for oslo.db services.

Turn it on with :func:`install`; see ``doc/source/host.rst``::

    handle = oslo_publish.install(CONF, enginefacade.writer)
    ...
    handle.stop()
"""

import os

from oslo_log import log
from sqlalchemy import orm

from oslo_publish import capture as capture_mod
from oslo_publish import exceptions
from oslo_publish import metrics as metrics_mod
from oslo_publish import options
from oslo_publish import outbox
from oslo_publish import schema

__all__ = ['install', 'Handle', 'PublishedTable', 'resolve_tables',
           'stream_name']

LOG = log.getLogger(__name__)

PublishedTable = schema.PublishedTable
resolve_tables = schema.resolve_tables
stream_name = schema.stream_name


class Handle(object):
    """What :func:`install` started; :meth:`stop` undoes all of it.

    :ivar stream: the stream name (None when disabled).
    :ivar tables: ``{name: PublishedTable}`` ({} when disabled).
    :ivar metrics: the :class:`~oslo_publish.metrics.HostMetrics`.
    :ivar sink: the delivery sink (outbox or direct), or None.
    :ivar relay: the in-process relay, or None.
    :ivar snapshot_server: the snapshot server, or None.
    :ivar stager: the log reader's stager (``capture = logical`` with the
        relay in this process), or None.
    :ivar engine: the host database's Engine, or None.
    :ivar enabled: False when ``[oslo_publish] enabled`` is false.
    """

    def __init__(self, enabled=False, stream=None, tables=None,
                 metrics=None, engine=None):
        self.enabled = enabled
        self.stream = stream
        self.tables = tables or {}
        self.metrics = metrics
        self.engine = engine
        self.sink = None
        self.capture = None
        self.relay = None
        self.snapshot_server = None
        self.stager = None
        self._cleanups = []
        self._pid = os.getpid()
        self._conf = None

    def _on_stop(self, fn, *args):
        self._cleanups.append((fn, args))

    def stop(self):
        """Remove the listeners, stop the threads (idempotent).

        In a process forked after :func:`install`, what belongs to the
        parent (its threads, broker and database connections) is left
        alone: only this process's own parts are stopped.
        """
        from oslo_publish import prefork
        prefork.unregister(self)
        while self._cleanups:
            fn, args = self._cleanups.pop()
            if self._pid != os.getpid() and fn not in self._child_safe():
                continue
            try:
                fn(*args)
            except Exception:  # noqa: stop everything else regardless
                LOG.exception('Stopping oslo.publish: %s failed', fn)

    def _child_safe(self):
        safe = []
        if self.capture is not None:
            safe.append(self.capture.detach)
        return safe

    def after_fork_in_child(self):
        """Called in a forked child (see :mod:`oslo_publish.prefork`)."""
        if self.engine is not None:
            self.engine.dispose(close=False)
        if self.relay is not None:
            self.relay.after_fork_in_child()
        if self.snapshot_server is not None:
            LOG.debug('Snapshots of stream %s are served by process %d',
                      self.stream, self._pid)
        restart = getattr(self.sink, 'after_fork_in_child', None)
        if restart is not None:
            stop = restart(self._conf)
            self._pid = os.getpid()
            self._cleanups = [(fn, args) for fn, args in self._cleanups
                              if fn in self._child_safe()]
            self._on_stop(stop)
        else:
            self._cleanups = [(fn, args) for fn, args in self._cleanups
                              if fn in self._child_safe()]
            self._pid = os.getpid()


def _is_enginefacade(target):
    return hasattr(target, 'get_sessionmaker') and \
        hasattr(target, 'writer') and hasattr(target, 'get_engine')


def _resolve_target(target, engine):
    """-> (what to listen on, the Engine or None)."""
    if _is_enginefacade(target):
        writer = target.writer
        return writer.get_sessionmaker(), engine or writer.get_engine()
    if isinstance(target, orm.scoped_session):
        target = target.session_factory
    if isinstance(target, orm.sessionmaker):
        return target, engine or target.kw.get('bind')
    if isinstance(target, type) and issubclass(target, orm.Session):
        if target is orm.Session:
            raise exceptions.UnsupportedTarget(
                'refusing to capture every Session of the process: pass '
                'a Session subclass, a sessionmaker or an enginefacade '
                'context manager')
        return target, engine
    raise exceptions.UnsupportedTarget(
        'cannot capture sessions of %r: expected an oslo.db enginefacade '
        'transaction context manager, a sessionmaker or a Session '
        'subclass' % (target,))


def _check_tables(engine, *tables):
    from sqlalchemy import inspect
    inspector = inspect(engine)
    for table in tables:
        if not inspector.has_table(table.name):
            raise exceptions.NotInstalled(
                'table %s is missing: run oslo-publish-manage upgrade'
                % table.name)


def install(conf, target, metadata=None, transport=None, metrics=None,
            engine=None, rpc_transport=None):
    """Capture and publish the allow-listed tables written via ``target``.

    :param conf: the service's ConfigOpts (``[oslo_publish]`` options are
        registered on it if needed).
    :param target: an oslo.db enginefacade transaction context manager
        (``enginefacade.writer``, ``enginefacade.transaction_context()``),
        a SQLAlchemy ``sessionmaker`` (or ``scoped_session``) or a
        ``Session`` subclass. Only sessions made by it are captured.
    :param metadata: the host's ``MetaData``; tables missing from it are
        reflected from the database.
    :param transport: an oslo.messaging notification transport (made
        from ``conf`` when needed and not given).
    :param metrics: a :class:`~oslo_publish.metrics.HostMetrics`.
    :param engine: the host database's Engine; needed only for a
        ``Session`` subclass target (the others know their engine).
    :param rpc_transport: an oslo.messaging RPC transport for the snapshot
        server (made from ``conf`` when None; one given is not cleaned up
        by :meth:`Handle.stop`).
    :returns: a :class:`Handle`.
    :raises ConfigError: a bad ``[oslo_publish]`` value (named).
    :raises UnsupportedTarget: ``target`` is none of the above.
    :raises NotInstalled: outbox delivery without the outbox table.
    """
    options.register_opts(conf)
    opts = conf.oslo_publish
    if not opts.enabled:
        LOG.info('oslo.publish is disabled: nothing installed')
        return Handle(enabled=False, metrics=metrics)
    listen, engine = _resolve_target(target, engine)
    if engine is None:
        raise exceptions.UnsupportedTarget(
            'no engine known for %r: pass engine=' % (target,))
    stream = schema.stream_name(conf)
    if opts.capture == 'logical':
        from oslo_publish import logcapture
        logcapture.check_config(conf, engine)
    tables = schema.resolve_tables(conf, metadata, engine)
    metrics = metrics or metrics_mod.HostMetrics()
    handle = Handle(enabled=True, stream=stream, tables=tables,
                    metrics=metrics, engine=engine)
    handle._conf = conf
    try:
        _start(handle, conf, listen, transport, rpc_transport)
    except Exception:
        handle.stop()
        raise
    from oslo_publish import prefork
    prefork.register(handle)
    LOG.info('oslo.publish installed: stream %(stream)s, tables %(tables)s,'
             ' delivery %(delivery)s',
             {'stream': stream, 'tables': ', '.join(sorted(tables)),
              'delivery': opts.delivery})
    return handle


def _notification_transport(handle, conf, transport):
    if transport is None:
        import oslo_messaging
        transport = oslo_messaging.get_notification_transport(conf)
        handle._on_stop(transport.cleanup)
    return transport


def _start(handle, conf, listen, transport, rpc_transport=None):
    opts = conf.oslo_publish
    stream, tables, engine = handle.stream, handle.tables, handle.engine
    relay = None
    from oslo_publish.relay import pacing
    activity = pacing.Activity()
    if opts.delivery == 'outbox':
        _check_tables(engine, outbox.outbox, outbox.streams)
        sink = outbox.OutboxSink(stream, notify=not opts.relay_in_process)
        if opts.relay_in_process or opts.snapshot_server:
            from oslo_publish import publisher as publisher_mod
            from oslo_publish import relay as relay_mod
            notifier = _notification_transport(handle, conf, transport)
            relay = relay_mod.Relay(
                conf, engine, stream, tables,
                publisher_mod.Publisher(conf, notifier, stream,
                                        handle.metrics),
                handle.metrics)
            handle._on_stop(relay.stop)
            if opts.relay_in_process:
                relay.start()
                sink.wake = relay.wake
                relay.activity = activity
                handle.relay = relay
    else:
        from oslo_publish import direct
        _check_tables(engine, outbox.streams)
        notifier = _notification_transport(handle, conf, transport)
        sink = direct.DirectSink(conf, engine, stream, tables, notifier,
                                 handle.metrics)
        sink.activity = activity
        sink.start()
        handle._on_stop(sink.stop)
    handle.sink = sink
    if opts.snapshot_server:
        relay = _start_snapshot_server(handle, conf, relay, transport,
                                       rpc_transport)
    if opts.capture == 'logical':
        _start_log_capture(handle, conf, relay)
        return
    cap = capture_mod.Capture(tables, sink, stream, handle.metrics,
                              reread_updates=opts.reread_updated_rows,
                              activity=activity)
    cap.attach(listen)
    handle.capture = cap
    handle._on_stop(cap.detach)


def _start_snapshot_server(handle, conf, relay, transport, rpc=None):
    import oslo_messaging
    from oslo_publish import snapshot
    if relay is None:
        from oslo_publish import publisher as publisher_mod
        from oslo_publish import relay as relay_mod
        notifier = _notification_transport(handle, conf, transport)
        relay = relay_mod.Relay(
            conf, handle.engine, handle.stream, handle.tables,
            publisher_mod.Publisher(conf, notifier, handle.stream,
                                    handle.metrics), handle.metrics)
        handle._on_stop(relay.stop)
    if rpc is None:
        rpc = oslo_messaging.get_rpc_transport(conf)
        handle._on_stop(rpc.cleanup)
    server = snapshot.SnapshotServer(conf, handle.engine, handle.stream,
                                     handle.tables, relay, rpc,
                                     handle.metrics)
    server.start()
    handle._on_stop(server.stop)
    handle.snapshot_server = server
    return relay


def _start_log_capture(handle, conf, relay):
    """``capture = logical``: no session events, the log is read.

    The in-process relay's stager reads it (else ``oslo-publish-relay``).
    """
    from oslo_publish import logcapture
    if relay is None:
        return
    stager = logcapture.attach(conf, handle.engine, handle.tables,
                               handle.stream, relay,
                               run_reader=conf.oslo_publish.relay_in_process)
    if stager is not None:
        handle.stager = stager
        handle._on_stop(stager.stop)
