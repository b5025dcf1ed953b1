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


"""``oslo-publish-manage``: create and upgrade the middleware's tables.

::

    oslo-publish-manage --config-file /etc/nova/nova.conf upgrade
    oslo-publish-manage --config-file /etc/nova/nova.conf current
    oslo-publish-manage --config-file /etc/nova/nova.conf capture-setup
    oslo-publish-manage --config-file /etc/nova/nova.conf capture-drop

The database is the service's own, ``[database] connection`` (oslo.db),
or the ``connection`` of the group named by ``--database-group`` /
``[oslo_publish] database_group`` (e.g. ``placement_database``). Logs go
to stderr; stdout carries the command's answer only.
The middleware keeps its revision in its own version table
(``oslo_publish_alembic_version``), so the service's ``alembic_version``
is never touched.
"""

import logging
import sys

from oslo_config import cfg
from oslo_log import log

from oslo_publish.cmd import common
from oslo_publish import migration

LOG = log.getLogger(__name__)


def _upgrade(conf, url):
    migration.upgrade(url, conf.command.revision)
    print('oslo.publish tables at revision %s'
          % (migration.current(url) or 'none'))


def _current(conf, url):
    # alembic reports its migration context at INFO; a query says nothing.
    logging.getLogger('alembic').setLevel(logging.WARNING)
    print(migration.current(url) or 'none')


def _log_reader(conf, url):
    """(reader class, engine, tables, stream) for the capture commands."""
    import sqlalchemy as sa

    from oslo_publish import logcapture
    from oslo_publish import schema
    stream = conf.command.stream or conf.oslo_publish.stream
    if not stream:
        raise ValueError('set [oslo_publish] stream (or --stream) to the '
                         'host service\'s stream name')
    engine = sa.create_engine(url)
    cls = logcapture.reader_class(engine.dialect.name)
    return cls, engine, schema.resolve_tables(conf, engine=engine), stream


def _capture_setup(conf, url):
    from oslo_publish import exceptions
    try:
        cls, engine, tables, stream = _log_reader(conf, url)
    except (ValueError, exceptions.PublishError) as exc:
        print('oslo-publish-manage: %s' % exc, file=sys.stderr)
        return 2
    try:
        cls.check(engine)
        name = cls.setup(conf, engine, tables, stream)
    except exceptions.ConfigError as exc:
        print('oslo-publish-manage: %s' % exc, file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    print('log capture of stream %s ready: %s' % (stream, name))
    return 0


def _capture_drop(conf, url):
    from oslo_publish import exceptions
    try:
        cls, engine, tables, stream = _log_reader(conf, url)
    except (ValueError, exceptions.PublishError) as exc:
        print('oslo-publish-manage: %s' % exc, file=sys.stderr)
        return 2
    try:
        name = cls.teardown(conf, engine, tables, stream)
    finally:
        engine.dispose()
    print('log capture of stream %s dropped: %s' % (stream, name))
    return 0


def _add_parsers(subparsers):
    upgrade = subparsers.add_parser(
        'upgrade', help='Create or upgrade the outbox tables.')
    upgrade.add_argument('revision', nargs='?', default='head',
                         help='Target revision (default: head).')
    upgrade.set_defaults(func=_upgrade)
    current = subparsers.add_parser(
        'current', help='Print the applied revision ("none" if none).')
    current.set_defaults(func=_current)
    setup = subparsers.add_parser(
        'capture-setup',
        help='capture = logical: check the database settings and create '
             'the log reader\'s objects (PostgreSQL: publication of the '
             'allow-listed tables, REPLICA IDENTITY FULL, replication '
             'slot). Idempotent; run again after changing the tables.')
    setup.add_argument('--stream', help='Stream name (overrides '
                                        '[oslo_publish] stream).')
    setup.set_defaults(func=_capture_setup)
    drop = subparsers.add_parser(
        'capture-drop',
        help='Drop what capture-setup created (the slot frees its WAL).')
    drop.add_argument('--stream', help='Stream name (overrides '
                                       '[oslo_publish] stream).')
    drop.set_defaults(func=_capture_drop)


def main(argv=None, conf=None):
    """Entry point; returns the process exit status."""
    conf = conf or cfg.ConfigOpts()
    common.register_cli_opts(conf)
    conf.register_cli_opt(cfg.SubCommandOpt(
        'command', title='Commands', handler=_add_parsers))
    log.register_options(conf)
    # Logs go to stderr; stdout carries the command's output only.
    conf.set_default('use_stderr', True)
    conf(sys.argv[1:] if argv is None else argv, project='oslo_publish')
    log.setup(conf, 'oslo_publish')
    try:
        group, url = common.connection(conf)
    except ValueError as exc:
        print('oslo-publish-manage: %s' % exc, file=sys.stderr)
        return 2
    if not url:
        print('oslo-publish-manage: [%s] connection is not set' % group,
              file=sys.stderr)
        return 2
    return conf.command.func(conf, url) or 0


if __name__ == '__main__':
    sys.exit(main())
