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

"""What the MariaDB server must provide for binlog capture.

Its settings and the connecting user's privileges (:func:`check`), the
replica connection's settings, the foreign keys that make InnoDB change
rows the binlog does not show, and the errors of the binlog reader.
"""

from oslo_publish import exceptions
from oslo_publish.logcapture import base

#: The server's answer to a replica asking for a position it lacks.
ER_MASTER_FATAL_ERROR_READING_BINLOG = 1236

#: Required server settings: ``{variable: accepted values}``.
REQUIRED = {
    'log_bin': ('ON', '1'),
    'binlog_format': ('ROW',),
    'binlog_row_image': ('FULL',),
    'binlog_row_metadata': ('FULL',),
}


class LogPositionLost(base.LogLost):
    """The binlog at the stored position is gone.

    Purged past the position, or another server: the stream must start
    a new epoch and resync (never a silent loss).
    """


class ReaderBusy(exceptions.PublishError):
    """Another process reads the binlog of this stream."""


class PrerequisiteError(exceptions.ConfigError):
    """The server lacks a setting or privilege binlog capture needs."""

    def __init__(self, setting, value, reason):
        exceptions.PublishError.__init__(
            self, 'MariaDB %s = %r: %s' % (setting, value, reason))
        self.option = setting
        self.value = value
        self.reason = reason


def connection_settings(engine):
    """pymysql settings of the replica connection (the engine's URL)."""
    url = engine.url
    settings = {'host': url.host or '127.0.0.1',
                'port': url.port or 3306,
                'user': url.username or 'root',
                'passwd': url.password or '',
                'charset': 'utf8mb4'}
    if url.query.get('unix_socket'):
        settings['unix_socket'] = url.query['unix_socket']
    return settings


def foreign_keys(engine, schema):
    """The foreign keys of ``schema``, for cascade detection.

    :returns: ``[(child, parent, parent_columns, on_delete, on_update)]``.
    """
    query = (
        'SELECT rc.CONSTRAINT_NAME, rc.TABLE_NAME, rc.REFERENCED_TABLE_NAME,'
        ' rc.DELETE_RULE, rc.UPDATE_RULE, k.REFERENCED_COLUMN_NAME'
        ' FROM information_schema.REFERENTIAL_CONSTRAINTS rc'
        ' JOIN information_schema.KEY_COLUMN_USAGE k'
        ' ON k.CONSTRAINT_SCHEMA = rc.CONSTRAINT_SCHEMA'
        ' AND k.CONSTRAINT_NAME = rc.CONSTRAINT_NAME'
        ' AND k.TABLE_NAME = rc.TABLE_NAME'
        ' WHERE rc.CONSTRAINT_SCHEMA = %s'
        ' ORDER BY rc.CONSTRAINT_NAME, k.ORDINAL_POSITION')
    keys = {}
    with engine.connect() as conn:
        for name, child, parent, on_delete, on_update, column in \
                conn.exec_driver_sql(query, (schema,)):
            entry = keys.setdefault((child, name), [
                child, parent, [], on_delete, on_update])
            entry[2].append(column)
    return [tuple(v) for v in keys.values()]


def _variables(conn, names):
    rows = conn.exec_driver_sql(
        'SHOW GLOBAL VARIABLES WHERE Variable_name IN (%s)'
        % ', '.join("'%s'" % n for n in names)).fetchall()
    return {r[0].lower(): r[1] for r in rows}


def check(engine):
    """Raise :class:`PrerequisiteError` naming what the server lacks."""
    with engine.connect() as conn:
        version = conn.exec_driver_sql('SELECT VERSION()').scalar()
        if 'mariadb' not in (version or '').lower():
            raise PrerequisiteError(
                'version', version, 'the binlog reader follows MariaDB '
                'GTIDs; MySQL servers are not supported yet')
        got = _variables(conn, list(REQUIRED) + [
            'server_id', 'gtid_binlog_state'])
        for name, accepted in REQUIRED.items():
            value = got.get(name)
            if value is None or value.upper() not in accepted:
                raise PrerequisiteError(
                    name, value, 'binlog capture needs %s = %s'
                    % (name, accepted[0]))
        if not got.get('server_id') or got['server_id'] == '0':
            raise PrerequisiteError('server_id', got.get('server_id'),
                                    'the server needs a server_id')
        domains = {g.split('-')[0] for g in
                   (got.get('gtid_binlog_state') or '').split(',')
                   if g.strip()}
        if len(domains) > 1:
            raise PrerequisiteError(
                'gtid_domain_id', ','.join(sorted(domains)),
                'binlog capture reads one GTID domain; the binlog has '
                'several')
        grants = ' '.join(r[0] for r in conn.exec_driver_sql(
            'SHOW GRANTS').fetchall()).upper()
        if 'ALL PRIVILEGES ON *.*' not in grants:
            for privilege in ('REPLICATION SLAVE', 'BINLOG MONITOR'):
                alias = {'REPLICATION SLAVE': 'REPLICATION REPLICA',
                         'BINLOG MONITOR': 'REPLICATION CLIENT'}
                if privilege not in grants and \
                        alias[privilege] not in grants:
                    raise PrerequisiteError(
                        'GRANT', privilege,
                        'the connecting user needs %s' % privilege)
