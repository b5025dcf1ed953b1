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

"""Per-column codecs: one encoding per column, whatever path a row takes.

A value reaches the wire by several paths: the Python value an ORM object
holds (capture of an insert), a Core row read through the host's declared
types (read-back, in-process snapshot server), or a row read through
*reflected* types (the standalone ``oslo-publish-relay``, where MariaDB
reports a ``Boolean`` as ``TINYINT(1)`` and a ``JSON`` as ``LONGTEXT``).
The same stored value takes different Python shapes on these paths.

A :class:`ColumnCodec` is built once per published column from its
published type (the declared type when known) and the database dialect.
It normalises any of those shapes to the one canonical Python value the
database stores, then encodes it with :func:`oslo_publish.wire.encode_value`
(see ``doc/source/wire.rst`` for the table, the contract). Normalising
includes what the database rounds: the scale of a ``Numeric``, MariaDB's
single-precision ``FLOAT`` and its second-precision ``DATETIME``/``TIME``,
the offset of a timezone-aware timestamp.
"""

import datetime
import decimal
import json
import math
import uuid

from oslo_log import log
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql import sqltypes

from oslo_publish import wire

LOG = log.getLogger(__name__)

#: What SQLAlchemy's Interval stores on databases without an INTERVAL.
_EPOCH = datetime.datetime(1970, 1, 1)
_UTC = datetime.timezone.utc

#: Kinds whose canonical values of this exact type are their own wire
#: encoding (``wire.encode_value`` returns them as they are).
_PLAIN_KINDS = {'boolean': bool, 'integer': int, 'string': str}
_NONE = type(None)

KINDS = ('boolean', 'integer', 'numeric', 'float', 'string', 'json',
         'json_text', 'datetime', 'date', 'time', 'interval', 'binary',
         'uuid', 'array', 'other')


def _mysql(dialect):
    return dialect in ('mysql', 'mariadb')


def _fsp(sqltype):
    return getattr(sqltype, 'fsp', None) or 0


def _impl(sqltype, dialect):
    """The type actually used on ``dialect`` (variants resolved)."""
    variants = getattr(sqltype, '_variant_mapping', None) or {}
    for name in (dialect, 'mysql' if dialect == 'mariadb' else None):
        if name in variants:
            return variants[name]
    return sqltype


def kind_of(sqltype, dialect=None, json_text=False):
    """The codec kind of a SQLAlchemy type (see :data:`KINDS`).

    :param json_text: the column is a text column known to hold JSON
        (MariaDB's ``JSON`` as reflected: ``LONGTEXT`` with a
        ``json_valid`` check).
    """
    t = _impl(sqltype, dialect)
    if json_text:
        return 'json_text'
    if isinstance(t, (sa.Interval, sqltypes._AbstractInterval)):
        return 'interval'
    if isinstance(t, sa.types.TypeDecorator):
        return 'other'  # the decorator's own Python values, as they come
    if isinstance(t, sa.Boolean):
        return 'boolean'
    if isinstance(t, mysql.TINYINT) and getattr(
            t, 'display_width', None) == 1:
        return 'boolean'  # MariaDB's BOOLEAN, as reflected
    if isinstance(t, (sa.Integer,)):
        return 'integer'
    if isinstance(t, sa.Float):
        return 'float' if not t.asdecimal else 'numeric'
    if isinstance(t, sa.Numeric):
        return 'numeric' if t.asdecimal else 'float'
    if isinstance(t, sa.JSON):
        return 'json'
    if isinstance(t, sa.ARRAY):
        return 'array'
    if isinstance(t, sa.Uuid):
        return 'uuid'
    if isinstance(t, (sa.Enum, sa.String)):
        return 'string'
    if isinstance(t, sa.DateTime):
        return 'datetime'
    if isinstance(t, sa.Date):
        return 'date'
    if isinstance(t, sa.Time):
        return 'time'
    if isinstance(t, (sa.LargeBinary, sqltypes._Binary)):
        return 'binary'
    return 'other'


class ColumnCodec(object):
    """Normalise and encode the values of one column.

    :ivar kind: one of :data:`KINDS`.
    """

    def __init__(self, sqltype, dialect=None, json_text=False):
        self.dialect = dialect
        t = _impl(sqltype, dialect)
        self.kind = kind_of(sqltype, dialect, json_text)
        self.scale = getattr(t, 'scale', None)
        if self.kind == 'numeric' and self.scale is None and \
                isinstance(t, sa.Numeric) and _mysql(dialect) and \
                not isinstance(t, sa.Float):
            self.scale = 0  # MySQL's DECIMAL defaults to DECIMAL(10, 0)
        self.timezone = bool(getattr(t, 'timezone', False))
        if isinstance(t, postgresql.TIMESTAMP) and t.timezone:
            self.timezone = True
        self.as_uuid = getattr(t, 'as_uuid', True)
        # MariaDB stores DATETIME/TIME to the second unless fsp is set;
        # SQLAlchemy's Interval is a DATETIME there.
        stored = t.impl_instance if isinstance(t, sa.Interval) else t
        self.drop_micro = _mysql(dialect) and _fsp(stored) == 0
        # MariaDB's FLOAT (no precision, or <= 24) is single precision
        # and answers 6 significant digits.
        precision = getattr(t, 'precision', None)
        self.single = (_mysql(dialect) and self.kind == 'float'
                       and isinstance(t, sa.Float)
                       and not isinstance(t, (sa.Double, mysql.DOUBLE))
                       and (precision is None or precision <= 24))
        self.item = None
        if self.kind == 'array':
            self.item = ColumnCodec(t.item_type, dialect)
        self._norm = getattr(self, '_' + self.kind)
        #: The Python type whose values are already canonical and encode
        #: to themselves (None: every value goes through encode()).
        self.plain_type = _PLAIN_KINDS.get(self.kind)

    def normalize(self, value):
        """The canonical Python value of ``value`` (None stays None)."""
        if value is None:
            return None
        return self._norm(value)

    def encode(self, value):
        """The wire encoding of ``value`` (canonical, then encoded)."""
        return wire.encode_value(self.normalize(value))

    def encode_many(self, values):
        """The wire encodings of a sequence of values, as a sequence.

        The same as ``[self.encode(v) for v in values]``; when every value
        already is of the column's :attr:`plain_type` (or None) the
        sequence is returned as it is, checked at C speed.
        """
        plain = self.plain_type
        if plain is not None and \
                set(map(type, values)).issubset((plain, _NONE)):
            return values
        encode = self.encode
        return [None if v is None else encode(v) for v in values]

    # ----------------------------------------------------------- kinds

    def _boolean(self, value):
        return bool(int(value)) if not isinstance(value, bool) else value

    def _integer(self, value):
        return value if type(value) is int else int(value)

    def _numeric(self, value):
        if not isinstance(value, decimal.Decimal):
            value = decimal.Decimal(repr(value) if isinstance(value, float)
                                    else str(value))
        if self.scale is not None and value.is_finite():
            value = value.quantize(decimal.Decimal(1).scaleb(-self.scale),
                                   rounding=decimal.ROUND_HALF_UP)
        return value

    def _float(self, value):
        value = float(value)
        if math.isnan(value) and self.dialect == 'sqlite':
            return None  # SQLite stores a NaN as NULL
        if self.single and math.isfinite(value):
            value = float('%.6g' % value)
        if value == 0.0 and self.dialect != 'postgresql':
            value = 0.0  # only PostgreSQL keeps the sign of a zero
        return value

    def _string(self, value):
        if isinstance(value, str):
            return value
        name = getattr(value, 'name', None)
        if name is not None and hasattr(type(value), '__members__'):
            return name
        return value  # not text: wire.encode_value refuses it

    def _json(self, value):
        return json.loads(json.dumps(value, sort_keys=True,
                                     allow_nan=False))

    def _json_text(self, value):
        if isinstance(value, (bytes, bytearray)):
            value = value.decode('utf-8')
        return self._json(json.loads(value))

    def _datetime(self, value):
        if isinstance(value, str):
            value = datetime.datetime.fromisoformat(value)
        if value.tzinfo is not None:
            if self.timezone and self.dialect == 'postgresql':
                value = value.astimezone(_UTC)
            else:
                # Without a zoned type the database keeps the wall clock.
                value = value.replace(tzinfo=None)
        elif self.timezone and self.dialect == 'postgresql':
            value = value.replace(tzinfo=_UTC)
        if self.drop_micro:
            value = value.replace(microsecond=0)
        return value

    def _date(self, value):
        if isinstance(value, datetime.datetime):
            return value.date()
        if isinstance(value, str):
            return datetime.date.fromisoformat(value)
        return value

    def _time(self, value):
        if isinstance(value, datetime.timedelta):  # raw MySQL TIME
            value = (_EPOCH + value).time()
        elif isinstance(value, str):
            value = datetime.time.fromisoformat(value)
        if value.tzinfo is not None and self.dialect != 'postgresql':
            value = value.replace(tzinfo=None)
        if self.drop_micro:
            value = value.replace(microsecond=0)
        return value

    def _interval(self, value):
        if isinstance(value, str):
            value = datetime.datetime.fromisoformat(value)
        if isinstance(value, datetime.datetime):  # stored as a DATETIME
            value = value.replace(tzinfo=None) - _EPOCH
        if self.drop_micro:
            value -= datetime.timedelta(microseconds=value.microseconds)
        return value

    def _binary(self, value):
        return bytes(value)

    def _uuid(self, value):
        if not isinstance(value, uuid.UUID):
            value = uuid.UUID(value.hex if hasattr(value, 'hex')
                              and not isinstance(value, (str, bytes))
                              else str(value))
        return value if self.as_uuid else str(value)

    def _array(self, value):
        return [self.item.normalize(v) if not isinstance(v, list)
                else self._array(v) for v in value]

    def _other(self, value):
        return value


def codecs_for(table, columns, dialect=None, json_columns=()):
    """``{column: ColumnCodec}`` of ``columns`` of ``table``."""
    json_columns = frozenset(json_columns)
    return {c: ColumnCodec(table.c[c].type, dialect,
                           json_text=c in json_columns and not isinstance(
                               _impl(table.c[c].type, dialect), sa.JSON))
            for c in columns}


def json_checked_columns(engine, table):
    """Columns MariaDB marks as JSON (``CHECK (json_valid(col))``).

    MariaDB's ``JSON`` is an alias of ``LONGTEXT`` with that check, so a
    reflected table loses it; the check is what is left. Empty elsewhere.
    """
    if not _mysql(engine.dialect.name):
        return frozenset()
    query = sa.text(
        'SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS '
        'WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = :t')
    try:
        with engine.connect() as conn:
            clauses = [r[0] for r in conn.execute(query, {'t': table.name})]
    except sa.exc.SQLAlchemyError as exc:
        LOG.debug('Cannot read the checks of %s: %s', table.name, exc)
        return frozenset()
    out = set()
    for clause in clauses:
        text = clause.replace('`', '').replace(' ', '').lower()
        for col in table.c:
            if text == 'json_valid(%s)' % col.name.lower():
                out.add(col.name)
    return frozenset(out)
