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


"""Numbers, times and delays shared by the relay and direct delivery."""

import datetime
import random

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

#: First backoff delay in seconds (doubles up to retry_max_backoff).
BACKOFF_START = 0.1


def utcnow():
    """Naive UTC now, the way the outbox stores timestamps."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def as_utc(value):
    """An outbox timestamp (naive UTC or aware) as an aware UTC datetime."""
    if value.tzinfo is None:
        return value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(datetime.timezone.utc)


def backoff(failures, cap):
    """Capped, jittered exponential delay after ``failures`` failures."""
    ceiling = min(cap, BACKOFF_START * (2 ** min(failures - 1, 30)))
    return random.uniform(ceiling / 2.0, ceiling)  # nosec - not crypto


def next_seq(last_seq, assigned):
    """The first number to assign after ``last_seq``.

    :param assigned: the numbers given to entries not yet marked
        published (in any order; may be empty).
    """
    return max([last_seq or 0] + [seq for seq in assigned
                                  if seq is not None]) + 1


def number_statement(table, alias, dialect, guard=False):
    """The UPDATE giving entries consecutive numbers in id order.

    Built once, so that it is compiled once: its parameters are the ids
    and the first number (``{'ids': [...], 'first': n}``); entry
    ``ids[i]`` gets ``first + i``. PostgreSQL passes the ids
    as one array (``array_position``), MariaDB/MySQL as an expanding list
    (``FIELD``). None for other databases (SQLite: the caller writes the
    numbers as a ``CASE`` over the ids). Only entries without a number
    are touched; the caller compares the row count.

    :param table: the outbox table.
    :param alias: another alias of it (for the guard).
    :param guard: number all the entries or none: nothing is updated
        when one of them has a number already (for a statement committed
        by itself).
    """
    first = sa.bindparam('first', type_=sa.BigInteger) - 1
    if dialect == 'postgresql':
        ids = sa.cast(sa.bindparam('ids'), postgresql.ARRAY(sa.BigInteger))
        update = table.update().where(table.c.id == sa.any_(ids))
        seq = first + sa.func.array_position(ids, table.c.id)
        mine = alias.c.id == sa.any_(ids)
    elif dialect in ('mysql', 'mariadb'):
        update = table.update().where(
            table.c.id.in_(sa.bindparam('ids', expanding=True)))
        seq = first + sa.func.find_in_set(table.c.id,
                                          sa.bindparam('id_list'))
        mine = alias.c.id.in_(sa.bindparam('ids', expanding=True))
    else:
        return None
    update = update.where(table.c.seq.is_(None))
    if guard:
        update = update.where(~sa.exists().where(
            mine, alias.c.seq.isnot(None)))
    return update.values(seq=seq)


def number_params(ids, first):
    """The parameters of :func:`number_statement`."""
    return {'ids': ids, 'first': first,
            'id_list': ','.join(str(int(ident)) for ident in ids)}


#: PostgreSQL (psycopg2): read the numbered, unmarked entries and number
#: the next pending ones, in ONE statement committed by itself (on the
#: relay's connection W, in autocommit, with the lock held in L). The
#: pending rows are locked (``FOR UPDATE``) before they are ranked, so
#: the numbers given are ``first`` ... ``first + k - 1`` without a hole
#: even if another transaction touched one of them meanwhile (it is then
#: left out, not skipped over). ``first`` is ``max(last_seq, highest
#: numbered unmarked seq) + 1``; the pending part is only read when the
#: numbered part left room in the batch (then it holds every numbered
#: entry, so its highest seq is the highest assigned).
CLAIM_SQL = (
    'WITH assigned AS ('
    'SELECT id, seq, txid, committed_at, payload FROM {outbox} '
    'WHERE stream = %(stream)s AND seq > %(last_seq)s '
    'AND published_at IS NULL ORDER BY seq LIMIT %(limit)s), '
    'locked AS ('
    'SELECT id FROM {outbox} WHERE stream = %(stream)s AND seq IS NULL '
    'ORDER BY id LIMIT GREATEST(0, %(limit)s - '
    '(SELECT count(*) FROM assigned)) FOR UPDATE), '
    'ranked AS ('
    'SELECT id, row_number() OVER (ORDER BY id) AS n FROM locked), '
    'numbered AS ('
    'UPDATE {outbox} AS o SET seq = ranked.n + GREATEST(%(last_seq)s, '
    '(SELECT max(seq) FROM assigned)) '
    'FROM ranked WHERE o.id = ranked.id AND o.seq IS NULL '
    'RETURNING o.id, o.seq, o.txid, o.committed_at, o.payload) '
    'SELECT id, seq, txid, committed_at, payload FROM assigned '
    'UNION ALL '
    'SELECT id, seq, txid, committed_at, payload FROM numbered')


def claim_sql(table, dialect):
    """:data:`CLAIM_SQL` for the outbox ``table``, quoted for ``dialect``.

    Parameters: ``{'stream': s, 'last_seq': n, 'limit': batch_size}``;
    rows ``(id, seq, txid, committed_at, payload)`` in no set order.
    """
    return CLAIM_SQL.format(
        outbox=dialect.identifier_preparer.format_table(table))


#: PostgreSQL (psycopg2): the numbering of :data:`CLAIM_SQL` for a
#: transaction that holds the stream lock (``SELECT ... FOR UPDATE`` of
#: the stream row) and commits right after it: ``last_seq`` is read from
#: the stream row instead of being a parameter, and nothing is numbered
#: when the row is missing. It returns nothing; the batch is read by
#: :data:`BATCH_SQL` (:meth:`StreamLock.claim_sql
#: <oslo_publish.relay.lock.StreamLock.claim_sql>` sends both, and the
#: transaction control between them, in one round trip).
NUMBER_NEXT_SQL = (
    'WITH stream AS ('
    'SELECT last_seq FROM {streams} WHERE stream = %(stream)s), '
    'assigned AS ('
    'SELECT seq FROM {outbox} '
    'WHERE stream = %(stream)s AND seq > (SELECT last_seq FROM stream) '
    'AND published_at IS NULL ORDER BY seq LIMIT %(limit)s), '
    'locked AS ('
    'SELECT id FROM {outbox} WHERE stream = %(stream)s AND seq IS NULL '
    'AND EXISTS (SELECT 1 FROM stream) '
    'ORDER BY id LIMIT GREATEST(0, %(limit)s - '
    '(SELECT count(*) FROM assigned)) FOR UPDATE), '
    'ranked AS ('
    'SELECT id, row_number() OVER (ORDER BY id) AS n FROM locked) '
    'UPDATE {outbox} AS o SET seq = ranked.n + GREATEST('
    '(SELECT last_seq FROM stream), (SELECT max(seq) FROM assigned)) '
    'FROM ranked WHERE o.id = ranked.id AND o.seq IS NULL')

#: PostgreSQL: lock the stream row and read, in the same statement, the
#: numbered entries not marked published after its ``last_seq`` (seq
#: order, up to ``limit``). Rows ``(last_seq, epoch, id, seq, txid,
#: committed_at, payload)``: none when the stream row is missing, one
#: with NULL entry columns when nothing is to be published.
BATCH_SQL = (
    'SELECT s.last_seq, s.epoch, o.id, o.seq, o.txid, o.committed_at, '
    'o.payload FROM (SELECT last_seq, epoch FROM {streams} '
    'WHERE stream = %(stream)s FOR UPDATE) AS s '
    'LEFT JOIN LATERAL (SELECT id, seq, txid, committed_at, payload '
    'FROM {outbox} WHERE stream = %(stream)s AND seq > s.last_seq '
    'AND published_at IS NULL ORDER BY seq LIMIT %(limit)s) AS o ON true')


def claim_parts(table, streams, dialect):
    """:data:`NUMBER_NEXT_SQL` and :data:`BATCH_SQL`, quoted for ``dialect``.

    Parameters of both: ``{'stream': s, 'limit': batch_size}``.
    """
    quote = dialect.identifier_preparer.format_table
    names = {'outbox': quote(table), 'streams': quote(streams)}
    return NUMBER_NEXT_SQL.format(**names), BATCH_SQL.format(**names)


#: PostgreSQL: number every unnumbered entry of the stream, in id order,
#: after the highest number given (``last_seq``, or a higher one
#: numbered and not yet published): the numbering of
#: :meth:`Relay.assign` in one statement, for a transaction that holds
#: the stream lock (the PostgreSQL staging batch,
#: :mod:`oslo_publish.logcapture.staging_pg`).
NUMBER_ALL_SQL = (
    'UPDATE {outbox} AS o SET seq = n.base + n.rn FROM ('
    'SELECT id, row_number() OVER (ORDER BY id) AS rn, '
    'GREATEST(%(last_seq)s, COALESCE((SELECT max(seq) FROM {outbox} '
    'WHERE stream = %(stream)s), 0)) AS base '
    'FROM {outbox} WHERE stream = %(stream)s AND seq IS NULL) AS n '
    'WHERE o.id = n.id')


def number_all_sql(table, dialect):
    """:data:`NUMBER_ALL_SQL` for the outbox ``table``, quoted for ``dialect``.

    Parameters: ``{'stream': s, 'last_seq': n}``.
    """
    return NUMBER_ALL_SQL.format(
        outbox=dialect.identifier_preparer.format_table(table))
