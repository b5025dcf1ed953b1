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

"""Per-column codecs: every Python shape of a value encodes alike."""

import datetime
import decimal
import enum
import uuid

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.dialects import postgresql
import testtools

from oslo_publish import codec
from oslo_publish import schema
from oslo_publish import wire

_PLUS2 = datetime.timezone(datetime.timedelta(hours=2))


class Colour(enum.Enum):
    red = 1


class TestColumnCodec(testtools.TestCase):

    def same(self, sqltype, dialect, *shapes, **kw):
        c = codec.ColumnCodec(sqltype, dialect, **kw)
        encoded = [c.encode(v) for v in shapes]
        for got in encoded[1:]:
            self.assertEqual(encoded[0], got)
        return encoded[0]

    def test_boolean_from_tinyint(self):
        """A declared Boolean and MariaDB's reflected TINYINT(1) agree."""
        self.assertIs(True, self.same(sa.Boolean(), 'mysql', True, 1))
        self.assertIs(False, self.same(mysql.TINYINT(display_width=1),
                                       'mysql', 0, False))

    def test_numeric_scale(self):
        """A Numeric value is given exactly the column's scale."""
        got = self.same(sa.Numeric(12, 3), 'postgresql',
                        decimal.Decimal('1234.56789'), 1234.568,
                        decimal.Decimal('1234.5680'))
        self.assertEqual({'__t': 'decimal', 'v': '1234.568'}, got)

    def test_mariadb_float_is_single_precision(self):
        """MariaDB's FLOAT keeps 6 digits, and no negative zero."""
        self.assertEqual(1.23457, self.same(sa.Float(), 'mysql',
                                            1.23456789, 1.23457))
        self.assertEqual('0.0', repr(self.same(sa.Float(), 'mysql', -0.0)))
        self.assertEqual('-0.0', repr(codec.ColumnCodec(
            sa.Float(), 'postgresql').encode(-0.0)))

    def test_sqlite_nan_is_null(self):
        """SQLite stores a NaN as NULL, so it is encoded as null."""
        self.assertIsNone(codec.ColumnCodec(sa.Float(), 'sqlite')
                          .encode(float('nan')))
        self.assertEqual({'__t': 'float', 'v': 'nan'}, codec.ColumnCodec(
            sa.Float(), 'postgresql').encode(float('nan')))

    def test_json_text_and_key_order(self):
        """JSON from LONGTEXT or a dict in any key order encodes alike."""
        declared = codec.ColumnCodec(sa.JSON(), 'mysql').encode(
            {'b': 1, 'a': [1.5]})
        reflected = codec.ColumnCodec(
            mysql.LONGTEXT(), 'mysql', json_text=True).encode(
                '{"b": 1, "a": [1.5]}')
        self.assertEqual(declared, reflected)
        self.assertEqual(['a', 'b'], list(declared['v']))

    def test_zoned_datetime_is_utc_on_postgresql(self):
        """An aware timestamp is the same instant in UTC on PostgreSQL."""
        aware = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=_PLUS2)
        got = self.same(sa.DateTime(timezone=True), 'postgresql', aware,
                        aware.astimezone(datetime.timezone.utc))
        self.assertEqual('2026-01-02T01:04:05+00:00', got['v'])

    def test_datetime_keeps_wall_clock_and_seconds_on_mariadb(self):
        """MariaDB keeps the wall clock, to the second without fsp."""
        aware = datetime.datetime(2026, 1, 2, 3, 4, 5, 678901,
                                  tzinfo=_PLUS2)
        got = self.same(sa.DateTime(timezone=True), 'mysql', aware,
                        datetime.datetime(2026, 1, 2, 3, 4, 5))
        self.assertEqual('2026-01-02T03:04:05', got['v'])
        kept = codec.ColumnCodec(mysql.DATETIME(fsp=6), 'mysql').encode(
            aware)
        self.assertEqual('2026-01-02T03:04:05.678901', kept['v'])

    def test_interval_stored_as_datetime(self):
        """An Interval read as its DATETIME encodes as the timedelta."""
        span = datetime.timedelta(days=2, seconds=3, microseconds=5)
        got = self.same(sa.Interval(), 'sqlite', span,
                        datetime.datetime(1970, 1, 1) + span)
        self.assertEqual({'__t': 'timedelta', 'v': str(
            (2 * 86400 + 3) * 10 ** 6 + 5)}, got)
        self.assertEqual('interval', codec.kind_of(postgresql.INTERVAL()))

    def test_uuid_enum_binary(self):
        """UUID text, Enum members and memoryviews take one form."""
        value = uuid.UUID('3f0c9a1b-2d4e-4f60-8a7b-9c0d1e2f3a4b')
        self.same(sa.Uuid(), 'mysql', value, value.hex, str(value))
        self.assertEqual('red', self.same(sa.Enum(Colour), 'postgresql',
                                          Colour.red, 'red'))
        self.same(sa.LargeBinary(), 'postgresql', b'\xff\x00',
                  memoryview(b'\xff\x00'))

    def test_null_and_unencodable(self):
        """None is null in every kind; a foreign object is refused."""
        for kind_type in (sa.Boolean(), sa.Numeric(5, 2), sa.JSON(),
                          sa.Interval(), sa.Uuid(), sa.String(5)):
            self.assertIsNone(codec.ColumnCodec(kind_type, 'mysql')
                              .encode(None))
        self.assertRaises(wire.WireError,
                          codec.ColumnCodec(sa.String(5)).encode, object())


class TestPublishedTableCodecs(testtools.TestCase):

    def test_rows_and_keys_use_the_column_codecs(self):
        """PublishedTable encodes rows and keys with its codecs."""
        table = sa.Table('t', sa.MetaData(),
                         sa.Column('id', sa.Integer, primary_key=True),
                         sa.Column('flag', sa.Boolean))
        pt = schema.PublishedTable('t', table, dialect='mysql')
        self.assertEqual({'id': 1, 'flag': True},
                         pt.encode_row({'id': 1, 'flag': 1}))
        self.assertEqual([7], pt.encode_key([7]))

    def test_full_unicode_url(self):
        """MySQL URLs get utf8mb4 unless they name a charset."""
        self.assertIn('charset=utf8mb4', schema.full_unicode_url(
            'mysql+pymysql://root@127.0.0.1/db'))
        self.assertIn('charset=latin1', schema.full_unicode_url(
            'mysql+pymysql://root@127.0.0.1/db?charset=latin1'))
        self.assertEqual('sqlite:///x', schema.full_unicode_url(
            'sqlite:///x'))


class TestEncodeMany(testtools.TestCase):
    """encode_many is encode() of every value, whatever the values."""

    def check(self, sqltype, dialect, values):
        c = codec.ColumnCodec(sqltype, dialect)
        got = list(c.encode_many(values))
        self.assertEqual([c.encode(v) for v in values], got)
        for want, have in zip([c.encode(v) for v in values], got):
            self.assertIs(type(want), type(have))
        return got

    def test_plain_columns_pass_as_they_are(self):
        """Values already canonical come back as the same sequence."""
        values = (1, None, 3)
        c = codec.ColumnCodec(sa.Integer(), 'postgresql')
        self.assertIs(values, c.encode_many(values))
        self.check(sa.String(10), 'postgresql', ('a', None, ''))
        self.check(sa.Boolean(), 'postgresql', (True, False, None))

    def test_other_shapes_go_through_the_codec(self):
        """A bool in an integer column, an enum, a decimal: encoded."""
        self.assertEqual([1, 2, None], self.check(
            sa.Integer(), 'postgresql', (True, decimal.Decimal(2), None)))
        self.assertEqual(['red', 'x'], self.check(
            sa.String(10), 'postgresql', (Colour.red, 'x')))
        self.assertEqual([True, False], self.check(
            mysql.TINYINT(display_width=1), 'mysql', (1, 0)))
        self.check(sa.Numeric(12, 3), 'postgresql',
                   (decimal.Decimal('1.23456'), None, 2.5))
        self.check(sa.DateTime(), 'mysql',
                   (datetime.datetime(2026, 1, 1, 1, 2, 3, 456),))
