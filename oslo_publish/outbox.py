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

"""The middleware's own tables: the outbox and the stream positions.

Both live in the host's database, in their own SQLAlchemy ``MetaData``
(never the host's), created and upgraded by ``oslo-publish-manage
upgrade`` with their own alembic version table
(:data:`VERSION_TABLE`).

``oslo_publish_outbox``
    One row per committed transaction that changed allow-listed tables,
    written in the same transaction as the data. ``payload`` holds the
    JSON of ``{"changes": [...], "tables": {...}}`` in the wire encoding.
    ``seq`` and ``published_at`` stay NULL until the relay published the
    entry and the broker confirmed it.
``oslo_publish_streams``
    One row per stream: the last sequence number published. Relays lock
    this row (``SELECT ... FOR UPDATE``) to serialise every process that
    publishes the same stream from the same database.
"""

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

VERSION_TABLE = 'oslo_publish_alembic_version'

metadata = sa.MetaData()

#: DATETIME with microseconds on MySQL/MariaDB (whose default has none).
Timestamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql',
                                       'mariadb')
#: Unbounded text (MySQL's TEXT stops at 64 KiB).
LongText = sa.Text().with_variant(mysql.LONGTEXT(), 'mysql', 'mariadb')
#: 64-bit autoincrement key that is still an INTEGER PRIMARY KEY on SQLite.
BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')

outbox = sa.Table(
    'oslo_publish_outbox', metadata,
    sa.Column('id', BigId, primary_key=True, autoincrement=True),
    sa.Column('stream', sa.String(255), nullable=False),
    sa.Column('txid', sa.String(36), nullable=False),
    sa.Column('committed_at', Timestamp, nullable=False),
    sa.Column('payload', LongText, nullable=False),
    sa.Column('seq', sa.BigInteger, nullable=True),
    sa.Column('published_at', Timestamp, nullable=True),
    sa.Index('oslo_publish_outbox_pending', 'stream', 'seq', 'id'),
    mysql_engine='InnoDB',
)

streams = sa.Table(
    'oslo_publish_streams', metadata,
    sa.Column('stream', sa.String(255), primary_key=True),
    sa.Column('last_seq', sa.BigInteger, nullable=False, default=0),
    sa.Column('updated_at', Timestamp, nullable=True),
    mysql_engine='InnoDB',
)
