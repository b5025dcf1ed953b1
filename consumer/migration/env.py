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


"""Alembic environment of the consumer state store.

Runs on the connection handed over in ``config.attributes['connection']``
(see :func:`consumer.migration.upgrade`); with none, on the URL in the
``sqlalchemy.url`` main option. Offline (SQL script) mode is not
supported.
"""

from alembic import context
import sqlalchemy as sa

from consumer import migration
from consumer import state

config = context.config


def _run(connection):
    context.configure(connection=connection,
                      target_metadata=state.metadata,
                      version_table=migration.VERSION_TABLE,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    connection = config.attributes.get('connection')
    if connection is not None:
        _run(connection)
        return
    engine = sa.create_engine(config.get_main_option('sqlalchemy.url'))
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError('offline migrations are not supported; run '
                       'consumer-manage upgrade against the database')
run_migrations_online()
