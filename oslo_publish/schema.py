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


"""Which tables are published: the allow-list resolved against the DB.

:func:`resolve_tables` turns ``[oslo_publish] tables`` and
``exclude_columns`` into :class:`PublishedTable` objects, looking each
table up in the host's ``MetaData`` first and reflecting it from the
database otherwise. Every bad value fails here, at install time, with a
:class:`~oslo_publish.exceptions.ConfigError` naming the option and the
value.
"""

import importlib
import os
import re
import sys

from oslo_log import log
import sqlalchemy as sa

from oslo_publish import codec
from oslo_publish import exceptions
from oslo_publish import wire

LOG = log.getLogger(__name__)

_STREAM_CHARS = re.compile(r'[^A-Za-z0-9_.-]+')


class PublishedTable(object):
    """One allow-listed table as the host publishes it.

    :ivar name: the table name as configured (and as it appears on the
        wire).
    :ivar table: the SQLAlchemy ``Table``.
    :ivar pk: tuple of primary-key column names, in primary-key order
        (the order of a change's ``key``).
    :ivar columns: tuple of published column names, in table order,
        excluded columns removed.
    :ivar version: :func:`oslo_publish.wire.schema_version` of the
        published columns and their types.
    :ivar codecs: ``{column: ColumnCodec}``: every path (capture, the
        snapshot server, in-process or standalone) encodes a value with
        its column's codec, see :mod:`oslo_publish.codec`.
    """

    def __init__(self, name, table, excluded=(), stored=None,
                 dialect=None, json_columns=()):
        self.name = name
        self.table = table
        self.pk = tuple(c.name for c in table.primary_key.columns)
        excluded = frozenset(excluded)
        self.excluded = excluded
        self.columns = tuple(c.name for c in table.columns
                             if c.name not in excluded)
        # The version fingerprints the types the database reports
        # (``stored``, the reflected table) when known, so that a process
        # with declared models and one reflecting (oslo-publish-relay)
        # agree: a declared DateTime reflects as TIMESTAMP on PostgreSQL,
        # a Numeric as DECIMAL on MySQL.
        types = stored if stored is not None else table
        self.version = wire.schema_version(
            [(c, wire.type_text(
                (types.c[c] if c in types.c else table.c[c]).type))
             for c in self.columns])
        self.codecs = codec.codecs_for(table, self.columns, dialect,
                                       json_columns)

    def encode_value(self, column, value):
        """The wire encoding of ``value`` of ``column``."""
        return self.codecs[column].encode(value)

    def encode_row(self, row):
        """Encode a mapping of (published) column name to value."""
        codecs = self.codecs
        return {c: codecs[c].encode(v) for c, v in row.items()}

    def encode_key(self, values):
        """The wire key (a list) of primary-key ``values``."""
        return [self.codecs[c].encode(v) for c, v in zip(self.pk, values)]

    def header(self):
        """The wire header of this table: ``{"pk": [...], "version"}``."""
        return {'pk': list(self.pk), 'version': self.version}

    def column_types(self):
        """``[[name, type_text], ...]`` of the published columns."""
        return [[c, wire.type_text(self.table.c[c].type)]
                for c in self.columns]

    def __repr__(self):
        return '<PublishedTable %s pk=%s columns=%d>' % (
            self.name, ','.join(self.pk), len(self.columns))


def stream_name(conf):
    """The stream name: the option, else the project, else the program."""
    name = conf.oslo_publish.stream
    if name:
        return name
    name = getattr(conf, 'project', None)
    if not name:
        prog = os.path.basename(sys.argv[0] or '') or 'oslo_publish'
        name = os.path.splitext(prog)[0]
    return _STREAM_CHARS.sub('_', name) or 'oslo_publish'


def full_unicode_url(url):
    """``url`` with ``charset=utf8mb4`` added for MySQL/MariaDB.

    oslo.db connects to MySQL with ``charset=utf8`` (utf8mb3) unless the
    URL names one, and MariaDB then answers every character outside the
    Basic Multilingual Plane as ``?``: a standalone relay would serve
    other text than the host's own deltas carry. Other URLs, and URLs
    that name a charset, are returned unchanged.
    """
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() not in ('mysql', 'mariadb') or \
            'charset' in parsed.query:
        return url
    return parsed.update_query_dict({'charset': 'utf8mb4'}) \
        .render_as_string(hide_password=False)


def _find_table(name, metadata, engine, reflected):
    if metadata is not None and name in metadata.tables:
        return metadata.tables[name]
    if engine is None:
        return None
    schema, _, bare = name.rpartition('.')
    inspector = sa.inspect(engine)
    if not inspector.has_table(bare, schema=schema or None):
        return None
    return sa.Table(bare, reflected, schema=schema or None,
                    autoload_with=engine)


def _stored(table, engine, reflected):
    """``table`` as the database describes it, or None when unknown."""
    if engine is None:
        return None
    if table.metadata is reflected:
        return table
    try:
        if not sa.inspect(engine).has_table(table.name,
                                            schema=table.schema):
            return None
        return sa.Table(table.name, sa.MetaData(), schema=table.schema,
                        autoload_with=engine)
    except sa.exc.SQLAlchemyError as exc:
        LOG.debug('Cannot reflect %s for its schema version: %s',
                  table.name, exc)
        return None


def _import_metadata(path):
    """The MetaData named by ``[oslo_publish] metadata``."""
    module, _, attr = path.partition(':')
    try:
        obj = importlib.import_module(module.strip())
        for part in attr.strip().split('.') if attr.strip() else ():
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError) as exc:
        raise exceptions.ConfigError('metadata', path, str(exc)) from exc
    obj = getattr(obj, 'metadata', obj)
    if not isinstance(obj, sa.MetaData):
        raise exceptions.ConfigError('metadata', path,
                                     'not a MetaData or declarative base')
    return obj


def _parse_excludes(entries, tables):
    excludes = {}
    for entry in entries:
        table, dot, column = entry.rpartition('.')
        if not dot or not table or not column:
            raise exceptions.ConfigError(
                'exclude_columns', entry, 'expected table.column')
        if table not in tables:
            raise exceptions.ConfigError(
                'exclude_columns', entry,
                'table %s is not in [oslo_publish] tables' % table)
        if column not in tables[table].c:
            raise exceptions.ConfigError(
                'exclude_columns', entry,
                'table %s has no column %s' % (table, column))
        if tables[table].c[column].primary_key:
            raise exceptions.ConfigError(
                'exclude_columns', entry,
                'a primary-key column cannot be excluded')
        excludes.setdefault(table, set()).add(column)
    return excludes


def resolve_tables(conf, metadata=None, engine=None):
    """Resolve the allow-list into ``{name: PublishedTable}``.

    :param conf: a ConfigOpts with the ``[oslo_publish]`` options.
    :param metadata: the host's ``MetaData`` (optional); tables not found
        there are reflected from ``engine``.
    :param engine: an Engine on the host database (optional).
    :raises ConfigError: for a table that does not exist or has no
        primary key (option ``tables``) or a bad ``exclude_columns``
        entry.
    """
    opts = conf.oslo_publish
    if metadata is None and getattr(opts, 'metadata', None):
        metadata = _import_metadata(opts.metadata)
    reflected = sa.MetaData()
    tables = {}
    for name in opts.tables:
        name = name.strip()
        if not name:
            continue
        table = _find_table(name, metadata, engine, reflected)
        if table is None:
            raise exceptions.ConfigError(
                'tables', name, 'no such table in the metadata or the '
                'database')
        if not table.primary_key.columns:
            raise exceptions.ConfigError(
                'tables', name, 'the table has no primary key')
        tables[name] = table
    excludes = _parse_excludes(
        [e.strip() for e in opts.exclude_columns if e.strip()], tables)
    if not tables:
        LOG.warning('[oslo_publish] tables is empty: nothing is published')
    dialect = engine.dialect.name if engine is not None else None
    return {name: PublishedTable(
        name, table, excludes.get(name, ()),
        _stored(table, engine, reflected), dialect,
        codec.json_checked_columns(engine, table)
        if table.metadata is reflected else ())
        for name, table in tables.items()}
