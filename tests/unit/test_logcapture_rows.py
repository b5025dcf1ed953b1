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

"""Net effect per row of a decoded transaction (logcapture.rows)."""

import decimal

import sqlalchemy as sa

from oslo_publish.logcapture import rows
from oslo_publish import schema
from tests import base

_META = sa.MetaData()
_ITEMS = sa.Table('items', _META,
                  sa.Column('id', sa.Integer, primary_key=True),
                  sa.Column('name', sa.String(20)),
                  sa.Column('price', sa.Numeric(10, 2)),
                  sa.Column('secret', sa.String(20)))


def _row(key, name='a', price='1.5', secret='pw'):
    return {'id': key, 'name': name, 'price': decimal.Decimal(price),
            'secret': secret}


class TestTransactionBuilder(base.TestCase):

    def setUp(self):
        super().setUp()
        self.pt = schema.PublishedTable('items', _ITEMS, ['secret'],
                                        dialect='postgresql')
        self.builder = rows.TransactionBuilder({'items': self.pt})

    def test_insert_is_encoded_without_excluded_columns(self):
        self.builder.add('items', rows.INSERT, None, _row(1))
        changes, tables = self.builder.finish()
        self.assertEqual([{'table': 'items', 'op': 'insert', 'key': [1],
                           'after': {'id': 1, 'name': 'a',
                                     'price': {'__t': 'decimal',
                                               'v': '1.50'}}}], changes)
        self.assertEqual({'items': self.pt.header()}, tables)

    def test_insert_then_update_is_one_insert_of_the_last_image(self):
        self.builder.add('items', rows.INSERT, None, _row(1))
        self.builder.add('items', rows.UPDATE, _row(1), _row(1, 'b'))
        changes, _ = self.builder.finish()
        self.assertEqual(['insert'], [c['op'] for c in changes])
        self.assertEqual('b', changes[0]['after']['name'])

    def test_insert_then_delete_is_nothing(self):
        self.builder.add('items', rows.INSERT, None, _row(1))
        self.builder.add('items', rows.DELETE, _row(1), None)
        self.assertEqual(([], {}), self.builder.finish())
        self.assertTrue(self.builder)

    def test_update_carries_changed_columns_and_their_old_values(self):
        self.builder.add('items', rows.UPDATE, _row(1), _row(1, 'b'))
        self.builder.add('items', rows.UPDATE, _row(1, 'b'),
                         _row(1, 'c', '2'))
        changes, _ = self.builder.finish()
        self.assertEqual(['name', 'price'], changes[0]['changed'])
        self.assertEqual({'name': 'a', 'price': {'__t': 'decimal',
                                                 'v': '1.50'}},
                         changes[0]['before'])

    def test_update_of_excluded_column_only_is_nothing(self):
        self.builder.add('items', rows.UPDATE, _row(1),
                         _row(1, secret='new'))
        self.assertEqual([], self.builder.finish()[0])

    def test_key_change_is_delete_and_insert(self):
        self.builder.add('items', rows.UPDATE, _row(1), _row(2))
        changes, _ = self.builder.finish()
        self.assertEqual([('delete', [1]), ('insert', [2])],
                         [(c['op'], c['key']) for c in changes])

    def test_update_then_delete_is_delete_of_the_original(self):
        self.builder.add('items', rows.UPDATE, _row(1), _row(1, 'b'))
        self.builder.add('items', rows.DELETE, _row(1, 'b'), None)
        changes, _ = self.builder.finish()
        self.assertEqual('delete', changes[0]['op'])
        self.assertEqual('a', changes[0]['before']['name'])

    def test_invalidation_supersedes_the_tables_rows(self):
        self.builder.add('items', rows.INSERT, None, _row(1))
        self.builder.invalidate('items', 'truncate')
        self.builder.add('items', rows.INSERT, None, _row(2))
        changes, _ = self.builder.finish()
        self.assertEqual([{'table': 'items', 'op': 'invalidate',
                           'cause': 'truncate'}], changes)

    def test_unencodable_value_invalidates_the_table(self):
        self.builder.add('items', rows.INSERT, None,
                         _row(1, name=object()))
        changes, _ = self.builder.finish()
        self.assertEqual('invalidate', changes[0]['op'])
        self.assertEqual('unencodable', changes[0]['cause'])

    def test_other_tables_are_ignored(self):
        self.builder.add('other', rows.INSERT, None, _row(1))
        self.builder.invalidate('other', 'truncate')
        self.assertFalse(self.builder)
