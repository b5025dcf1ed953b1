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

"""Log-based capture (``[oslo_publish] capture = logical``).

Instead of watching the host's sessions, a reader decodes the database's
own change log (PostgreSQL logical decoding, MariaDB/MySQL row binlog),
keeps the allow-listed tables, drops excluded columns and hands each
committed transaction, in commit order, to the staging step; from there
the relay numbers and publishes exactly as for session capture, so a
consumer cannot tell which backend a stream uses.

Modules: :mod:`.base` (the interface between a reader and the rest),
one module per log format, and :mod:`.staging` (the durable mapping of
log positions to outbox entries; :mod:`.staging_pg` and
:mod:`.staging_my`, its batch in two round trips on PostgreSQL and on
MariaDB; :mod:`.direct`, the same batch publishing straight from the
log, without an outbox entry, in the steady state).
"""

import importlib

from oslo_publish import exceptions

NAMESPACE = 'oslo_publish.log_readers'

# Used when the package metadata is not installed (a source checkout).
_BUILTIN = {
    'postgresql': 'oslo_publish.logcapture.pgoutput:Reader',
    'mysql': 'oslo_publish.logcapture.binlog:Reader',
    'mariadb': 'oslo_publish.logcapture.binlog:Reader',
}


def reader_class(dialect):
    """The :class:`~.base.LogReader` class for a SQLAlchemy dialect name.

    Looked up in the ``oslo_publish.log_readers`` entry points.

    :raises ConfigError: (option ``capture``) no reader for ``dialect``.
    """
    from stevedore import driver
    try:
        return driver.DriverManager(NAMESPACE, dialect,
                                    invoke_on_load=False).driver
    except Exception:  # noqa: not registered: try the built-in map
        path = _BUILTIN.get(dialect)
    if path is None:
        raise exceptions.ConfigError(
            'capture', 'logical',
            'no log reader for the %s database (session capture only)'
            % dialect)
    module, _, attr = path.partition(':')
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise exceptions.ConfigError(
            'capture', 'logical', 'the log reader of the %s database '
            'cannot be loaded: %s' % (dialect, exc)) from exc


def check_config(conf, engine):
    """Refuse ``capture = logical`` where it cannot work (named option).

    :returns: the reader class for ``engine``'s dialect.
    """
    opts = conf.oslo_publish
    dialect = engine.dialect.name
    if dialect == 'sqlite':
        raise exceptions.ConfigError(
            'capture', opts.capture,
            'SQLite has no change log to read: use capture = session')
    if opts.delivery != 'outbox':
        raise exceptions.ConfigError(
            'delivery', opts.delivery,
            'capture = logical stages transactions into the outbox: '
            'use delivery = outbox')
    return reader_class(dialect)


def attach(conf, engine, tables, stream, relay, run_reader=True):
    """Give ``relay`` the watermark cut; start the stager if asked.

    :param relay: the stream's :class:`~oslo_publish.relay.Relay`.
    :param run_reader: read the log in this process (the in-process or
        standalone relay); False for a process that serves snapshots
        only.
    :returns: the started :class:`~.staging.Stager`, or None.
    """
    import sqlalchemy as sa

    from oslo_publish.logcapture import staging
    from oslo_publish import outbox
    cls = check_config(conf, engine)
    if not sa.inspect(engine).has_table(outbox.log_positions.name):
        raise exceptions.NotInstalled(
            'table %s is missing: run oslo-publish-manage upgrade'
            % outbox.log_positions.name)
    reader = cls(conf, engine, tables, stream)
    relay.snapshot_cut = cls(conf, engine, tables, stream).snapshot_cut
    if not run_reader:
        return None
    cls.check(engine)  # e.g. wal_level, named, at start
    stager = staging.Stager(engine, stream, reader, wake=relay.wake,
                            relay=relay)
    stager.start()
    return stager
