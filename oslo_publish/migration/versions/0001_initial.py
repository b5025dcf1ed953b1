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


"""Initial tables: the outbox and the stream positions.

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

# Frozen copies of the column types of oslo_publish.outbox at this revision.
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql',
                                       'mariadb')
LongText = sa.Text().with_variant(mysql.LONGTEXT(), 'mysql', 'mariadb')
BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade():
    op.create_table(
        'oslo_publish_outbox',
        sa.Column('id', BigId, primary_key=True, autoincrement=True),
        sa.Column('stream', sa.String(255), nullable=False),
        sa.Column('txid', sa.String(36), nullable=False),
        sa.Column('committed_at', Timestamp, nullable=False),
        sa.Column('payload', LongText, nullable=False),
        sa.Column('seq', sa.BigInteger, nullable=True),
        sa.Column('published_at', Timestamp, nullable=True),
        mysql_engine='InnoDB',
    )
    op.create_index('oslo_publish_outbox_pending', 'oslo_publish_outbox',
                    ['stream', 'seq', 'id'])
    op.create_table(
        'oslo_publish_streams',
        sa.Column('stream', sa.String(255), primary_key=True),
        sa.Column('last_seq', sa.BigInteger, nullable=False),
        sa.Column('updated_at', Timestamp, nullable=True),
        mysql_engine='InnoDB',
    )


def downgrade():
    op.drop_table('oslo_publish_streams')
    op.drop_table('oslo_publish_outbox')
