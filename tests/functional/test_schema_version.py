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


"""Declared models and reflection give every table the same version.

Host processes resolve their tables from their declared models;
``oslo-publish-relay`` (and its snapshot server) reflects them from the
database. Both must publish the same schema version, or a consumer sees a
schema change on every delta and resynchronises forever.
"""

import enum

import sqlalchemy as sa

from oslo_publish import outbox
from oslo_publish import schema
from tests import base


class _Mood(enum.Enum):
    good = 'good'
    bad = 'bad'


def _wide(metadata):
    return sa.Table(
        'wide', metadata,
        sa.Column('id', sa.Integer, primary_key=True),
        sa.Column('name', sa.String(64)),
        sa.Column('body', sa.Text),
        sa.Column('price', sa.Numeric(10, 2)),
        sa.Column('ratio', sa.Float),
        sa.Column('flag', sa.Boolean),
        sa.Column('mood', sa.Enum(_Mood, name='mood')),
        sa.Column('props', sa.JSON),
        sa.Column('at', sa.DateTime),
        sa.Column('stamp', outbox.Timestamp),
        sa.Column('secret', sa.String(32)),
        mysql_engine='InnoDB')


class _VersionTests(object):

    def test_declared_and_reflected_versions_agree(self):
        """A declared table and its reflection publish one version."""
        declared = sa.MetaData()
        _wide(declared)
        declared.create_all(self.engine)
        self.conf.set_override('tables', ['wide'], 'oslo_publish')
        self.conf.set_override('exclude_columns', ['wide.secret'],
                               'oslo_publish')
        from_models = schema.resolve_tables(self.conf, declared, self.engine)
        from_db = schema.resolve_tables(self.conf, engine=self.engine)
        self.assertEqual(from_db['wide'].columns,
                         from_models['wide'].columns)
        self.assertEqual(from_db['wide'].version,
                         from_models['wide'].version)

    def test_version_without_engine_uses_the_models(self):
        """Without an engine the declared types give the version."""
        declared = sa.MetaData()
        _wide(declared)
        self.conf.set_override('tables', ['wide'], 'oslo_publish')
        got = schema.resolve_tables(self.conf, declared)
        self.assertEqual(16, len(got['wide'].version))


class TestVersionsSQLite(_VersionTests, base.BackendTestCase):
    BACKEND = 'sqlite'


class TestVersionsPostgreSQL(_VersionTests, base.BackendTestCase):
    BACKEND = 'postgresql'


class TestVersionsMySQL(_VersionTests, base.BackendTestCase):
    BACKEND = 'mysql'
