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

"""``oslo-publish-relay``: the relay (and snapshot server) as a service.

::

    oslo-publish-relay --config-file /etc/nova/nova.conf

Reads the host service's configuration: the database from oslo.db's
``[database] connection``, the bus from ``transport_url`` /
``[oslo_messaging_notifications]``, everything else from
``[oslo_publish]``. The stream name is ``[oslo_publish] stream`` or
``--stream`` (it must match the stream the host processes write; their
default, the service's project name, is not known here). Run it when the
host processes set ``relay_in_process = false``; with
``snapshot_server = true`` it also serves snapshots. Any number of
relays may run: they serialise on the stream lock. With ``[oslo_publish]
capture = logical`` it also reads the database's change log and stages
it into the outbox (:mod:`oslo_publish.logcapture`); of several relays
one holds the log (a PostgreSQL slot streams to one reader at a time),
the others take over when it stops. ``--metrics-port``
serves the Prometheus metrics over HTTP. SIGTERM or SIGINT
stops it cleanly (the current batch is finished or rolled back; nothing
is lost).
"""

import signal
import sys
import threading
import time

from oslo_config import cfg
from oslo_db import exception as db_exc
from oslo_db.sqlalchemy import engines
from oslo_log import log
import oslo_messaging
import prometheus_client
import sqlalchemy as sa

from oslo_publish.cmd import common
from oslo_publish import exceptions
from oslo_publish import metrics as metrics_mod
from oslo_publish import options
from oslo_publish import outbox
from oslo_publish import publisher as publisher_mod
from oslo_publish import relay as relay_mod
from oslo_publish import schema
from oslo_publish import snapshot

LOG = log.getLogger(__name__)

#: Start-up checks tried this many times, this many seconds apart, when
#: the database connection breaks (then the relay exits with status 2).
START_ATTEMPTS = 5
START_RETRY_DELAY = 1.0

_cli_opts = [
    cfg.StrOpt('stream',
               help='Stream to relay (overrides [oslo_publish] stream).'),
    cfg.PortOpt('metrics-port',
                help='Serve the Prometheus metrics on this port (all '
                     'addresses) at /metrics.'),
]


def setup_conf(argv, conf=None):
    """Parse the command line and configuration files."""
    conf = conf or cfg.ConfigOpts()
    options.register_opts(conf)
    common.register_cli_opts(conf)
    conf.register_cli_opts(_cli_opts)
    log.register_options(conf)
    conf(argv, project='oslo_publish')
    log.setup(conf, 'oslo_publish')
    return conf


def _fail(text):
    print('oslo-publish-relay: %s' % text, file=sys.stderr)
    return 2


def main(argv=None, conf=None):
    """Entry point; returns the process exit status."""
    conf = setup_conf(sys.argv[1:] if argv is None else argv, conf)
    stream = conf.stream or conf.oslo_publish.stream
    if not stream:
        return _fail('set [oslo_publish] stream (or --stream) to the host '
                     'service\'s stream name')
    try:
        group, url = common.connection(conf)
    except ValueError as exc:
        return _fail(str(exc))
    if not url:
        return _fail('[%s] connection is not set' % group)
    url = schema.full_unicode_url(url)
    # oslo.db emits its own BEGIN on SQLite at every autobegin, even in
    # AUTOCOMMIT, which breaks the relay's BEGIN IMMEDIATE.
    engine = (sa.create_engine(url) if url.startswith('sqlite')
              else engines.create_engine(url))
    for attempt in range(START_ATTEMPTS):
        try:
            if not sa.inspect(engine).has_table(outbox.outbox.name):
                return _fail('table %s is missing: run oslo-publish-manage '
                             'upgrade' % outbox.outbox.name)
            tables = schema.resolve_tables(conf, engine=engine)
            if conf.oslo_publish.capture == 'logical':
                from oslo_publish import logcapture
                logcapture.check_config(conf, engine).check(engine)
            break
        except exceptions.ConfigError as exc:
            return _fail(str(exc))
        except (sa.exc.OperationalError, db_exc.DBConnectionError) as exc:
            # A session killed or a server restarting while the relay
            # starts: try again a few times before giving up.
            if attempt + 1 == START_ATTEMPTS:
                return _fail('cannot reach the database: %s'
                             % (getattr(exc, 'orig', None) or exc))
            LOG.warning('Start-up checks failed (%s); retrying', exc)
            engine.dispose()
            time.sleep(START_RETRY_DELAY)
    stop = threading.Event()

    def _on_signal(signum, frame):
        LOG.info('Signal %d received, stopping', signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    run(conf, engine, stream, tables, stop)
    engine.dispose()
    return 0


def run(conf, engine, stream, tables, stop):
    """Relay (and serve snapshots) until ``stop`` is set."""
    metrics = metrics_mod.HostMetrics()
    if conf.metrics_port:
        prometheus_client.start_http_server(conf.metrics_port,
                                            registry=metrics.registry)
    notifier = oslo_messaging.get_notification_transport(conf)
    relay = relay_mod.Relay(
        conf, engine, stream, tables,
        publisher_mod.Publisher(conf, notifier, stream, metrics), metrics)
    server = rpc = None
    if conf.oslo_publish.snapshot_server:
        rpc = oslo_messaging.get_rpc_transport(conf)
        server = snapshot.SnapshotServer(conf, engine, stream, tables,
                                         relay, rpc, metrics)
        server.start()
    relay.start()
    stager = None
    if conf.oslo_publish.capture == 'logical':
        from oslo_publish import logcapture
        stager = logcapture.attach(conf, engine, tables, stream, relay)
    LOG.info('oslo-publish-relay running: stream %(stream)s, tables '
             '%(tables)s, snapshot server %(snap)s',
             {'stream': stream, 'tables': ', '.join(sorted(tables)),
              'snap': 'on' if server else 'off'})
    try:
        while not stop.wait(1.0):
            pass
    finally:
        if stager is not None:
            stager.stop()
        relay.stop()
        if server is not None:
            server.stop()
            rpc.cleanup()
        notifier.cleanup()
        LOG.info('oslo-publish-relay stopped')


if __name__ == '__main__':
    sys.exit(main())
