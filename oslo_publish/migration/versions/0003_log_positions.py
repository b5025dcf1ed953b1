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


"""Log-based capture: oslo_publish_log_positions and outbox.xid.

``oslo_publish_log_positions`` keeps, per stream, the log position of
the last transaction staged into the outbox by ``capture = logical``;
``oslo_publish_outbox.xid`` and ``log_position`` the database
transaction id and log position of a staged entry (the snapshot
watermark decides visibility by them). Session capture leaves them
alone.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql',
                                       'mariadb')


def upgrade():
    with op.batch_alter_table('oslo_publish_outbox') as batch:
        batch.add_column(sa.Column('xid', sa.BigInteger, nullable=True))
        batch.add_column(sa.Column('log_position', sa.String(255),
                                   nullable=True))
    op.create_table(
        'oslo_publish_log_positions',
        sa.Column('stream', sa.String(255), primary_key=True),
        sa.Column('position', sa.String(255), nullable=False),
        sa.Column('updated_at', Timestamp, nullable=True),
        mysql_engine='InnoDB',
    )


def downgrade():
    op.drop_table('oslo_publish_log_positions')
    with op.batch_alter_table('oslo_publish_outbox') as batch:
        batch.drop_column('log_position')
        batch.drop_column('xid')
