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

"""Bulk upserts and deletes of mirrored rows, one statement per call.

The delta path of the state store (``StateStore.commit_batch``) writes
the rows a batch of transactions leaves behind with these, inside its
transaction:

PostgreSQL
    ``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO UPDATE``: the
    whole chunk travels as three text arrays in one statement;
    ``DELETE ... WHERE key_hash = ANY(...)``.
MySQL / MariaDB
    ``INSERT ... ON DUPLICATE KEY UPDATE`` executemany (the drivers send
    it as one multi-row ``INSERT``).
SQLite (and any other backend)
    ``INSERT ... ON CONFLICT DO UPDATE`` executemany (one prepared
    statement); deletes with ``key_hash IN (...)``.

The caller passes each key at most once per call (PostgreSQL refuses to
update one row twice in a statement).
"""

from sqlalchemy.dialects import mysql
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite

_PG_UPSERT = (
    'INSERT INTO {t} (stream, table_name, key_hash, key_json, row_json) '
    'SELECT %(stream)s, %(table)s, u.h, u.k, u.r '
    'FROM unnest(%(hashes)s::text[], %(keys)s::text[], %(rows)s::text[]) '
    'AS u(h, k, r) '
    'ON CONFLICT (stream, table_name, key_hash) DO UPDATE SET '
    'key_json = EXCLUDED.key_json, row_json = EXCLUDED.row_json')
_PG_DELETE = ('DELETE FROM {t} WHERE stream = %(stream)s AND '
              'table_name = %(table)s AND key_hash = ANY(%(hashes)s)')


def _is_psycopg2(conn):
    return conn.dialect.name == 'postgresql' and \
        conn.dialect.driver == 'psycopg2'


def upsert_rows(conn, table_obj, stream, table, items):
    """Insert or replace ``items`` of ``(key_hash, key_text, row_text)``.

    :param conn: a SQLAlchemy Connection inside the caller's transaction.
    """
    if not items:
        return
    if _is_psycopg2(conn):
        conn.exec_driver_sql(_PG_UPSERT.format(t=table_obj.name), {
            'stream': stream, 'table': table,
            'hashes': [item[0] for item in items],
            'keys': [item[1] for item in items],
            'rows': [item[2] for item in items]})
        return
    values = [{'stream': stream, 'table_name': table, 'key_hash': digest,
               'key_json': text, 'row_json': row}
              for digest, text, row in items]
    name = conn.dialect.name
    if name in ('mysql', 'mariadb'):
        statement = mysql.insert(table_obj)
        statement = statement.on_duplicate_key_update(
            key_json=statement.inserted.key_json,
            row_json=statement.inserted.row_json)
    else:
        module = postgresql if name == 'postgresql' else sqlite
        if name not in ('postgresql', 'sqlite'):
            # No portable upsert: replace through delete + insert.
            delete_rows(conn, table_obj, stream, table,
                        [item[0] for item in items])
            conn.execute(table_obj.insert(), values)
            return
        statement = module.insert(table_obj)
        statement = statement.on_conflict_do_update(
            index_elements=['stream', 'table_name', 'key_hash'],
            set_={'key_json': statement.excluded.key_json,
                  'row_json': statement.excluded.row_json})
    conn.execute(statement, values)


def delete_rows(conn, table_obj, stream, table, digests):
    """Delete the rows of ``table`` whose key hash is in ``digests``."""
    if not digests:
        return
    if _is_psycopg2(conn):
        conn.exec_driver_sql(_PG_DELETE.format(t=table_obj.name), {
            'stream': stream, 'table': table, 'hashes': list(digests)})
        return
    conn.execute(table_obj.delete().where(
        table_obj.c.stream == stream, table_obj.c.table_name == table,
        table_obj.c.key_hash.in_(digests)))
