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


"""Initial state store: positions, mirrored rows, stream status.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None

# Frozen copies of the column types (a migration never follows later
# changes of the models).
_Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql',
                                        'mariadb')
_LongText = sa.Text().with_variant(mysql.LONGTEXT(), 'mysql', 'mariadb')
_BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade():
    op.create_table(
        'consumer_positions',
        sa.Column('id', _BigId, primary_key=True, autoincrement=True),
        sa.Column('scope_id', sa.String(255), nullable=False),
        sa.Column('scope_key', sa.String(255), nullable=True),
        sa.Column('collector', sa.String(64), nullable=True),
        sa.Column('fetcher', sa.String(64), nullable=True),
        sa.Column('seq', sa.BigInteger, nullable=True),
        sa.Column('committed_at', _Timestamp, nullable=True),
        sa.Column('schema_version', sa.String(64), nullable=True),
        sa.Column('state', sa.String(32), nullable=True),
        sa.Column('last_error', sa.Text, nullable=True),
        sa.Column('updated_at', _Timestamp, nullable=True),
        sa.UniqueConstraint('scope_id', 'scope_key', 'collector', 'fetcher',
                            name='consumer_positions_unit'),
        mysql_engine='InnoDB',
    )
    op.create_index('consumer_positions_stream', 'consumer_positions',
                    ['scope_key', 'collector', 'fetcher'])
    op.create_table(
        'consumer_rows',
        sa.Column('stream', sa.String(255), primary_key=True),
        sa.Column('table_name', sa.String(255), primary_key=True),
        sa.Column('key_hash', sa.String(64), primary_key=True),
        sa.Column('key_json', sa.Text, nullable=False),
        sa.Column('row_json', _LongText, nullable=False),
        mysql_engine='InnoDB',
    )
    op.create_table(
        'consumer_streams',
        sa.Column('stream', sa.String(255), primary_key=True),
        sa.Column('state', sa.String(32), nullable=True),
        sa.Column('last_error', sa.Text, nullable=True),
        sa.Column('counters', sa.Text, nullable=True),
        sa.Column('updated_at', _Timestamp, nullable=True),
        mysql_engine='InnoDB',
    )


def downgrade():
    op.drop_table('consumer_streams')
    op.drop_table('consumer_rows')
    op.drop_index('consumer_positions_stream',
                  table_name='consumer_positions')
    op.drop_table('consumer_positions')
