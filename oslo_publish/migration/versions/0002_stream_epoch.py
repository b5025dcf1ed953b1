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


"""Stream epochs: oslo_publish_streams.epoch.

Every existing stream gets a new epoch (its consumers resynchronise once
when they see it; before, they knew none).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

import uuid

from alembic import op
import sqlalchemy as sa

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('oslo_publish_streams') as batch:
        batch.add_column(sa.Column('epoch', sa.String(32), nullable=True))
    streams = sa.table('oslo_publish_streams', sa.column('stream'),
                       sa.column('epoch', sa.String(32)))
    conn = op.get_bind()
    names = [row[0] for row in conn.execute(sa.select(streams.c.stream))]
    for name in names:
        conn.execute(streams.update().where(streams.c.stream == name)
                     .values(epoch=uuid.uuid4().hex))


def downgrade():
    with op.batch_alter_table('oslo_publish_streams') as batch:
        batch.drop_column('epoch')
