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

"""Mirrored rows of integer keys are indexed in key order.

``consumer_rows.key_hash`` of a key of one to three 64-bit integers is
now the key itself in fixed-width hex (see
:func:`consumer.store_codec.key_hash`) instead of a SHA-256, so that a
snapshot, which comes in key order, fills the primary-key index at its
right end. This revision rewrites the ``key_hash`` of the rows stored
before it, in the upgrade's transaction; other keys keep their SHA-256.
The schema itself does not change.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from alembic import op
import sqlalchemy as sa

from consumer import store_codec

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

#: Rows read and rewritten per batch.
_BATCH = 5000

_rows = sa.table('consumer_rows', sa.column('stream'),
                 sa.column('table_name'), sa.column('key_hash'),
                 sa.column('key_json'))


def _rehash(new_hash):
    conn = op.get_bind()
    found = conn.execute(sa.select(
        _rows.c.stream, _rows.c.table_name, _rows.c.key_hash,
        _rows.c.key_json)).all()
    changed = [{'s': stream, 't': table, 'old': old, 'new': new}
               for stream, table, old, text in found
               for new in (new_hash(text),) if new != old]
    # The new and the old forms never collide: an integer form has 16,
    # 32 or 48 characters, a SHA-256 hex 64.
    statement = _rows.update().where(
        _rows.c.stream == sa.bindparam('s'),
        _rows.c.table_name == sa.bindparam('t'),
        _rows.c.key_hash == sa.bindparam('old')).values(
            key_hash=sa.bindparam('new'))
    for start in range(0, len(changed), _BATCH):
        conn.execute(statement, changed[start:start + _BATCH])


def upgrade():
    _rehash(store_codec.key_hash)


def downgrade():
    _rehash(store_codec.sha_key_hash)
