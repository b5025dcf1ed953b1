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


"""Alembic migrations of the middleware's own tables.

The scripts live in this package (found through ``__file__``, so an
installed wheel works) and record their revision in their own version
table, :data:`oslo_publish.outbox.VERSION_TABLE`: the host's
``alembic_version`` is never read or written.
"""

import os

from alembic import command
from alembic import config as alembic_config
from alembic import migration as alembic_migration
import sqlalchemy as sa

from oslo_publish import outbox

SCRIPT_LOCATION = os.path.dirname(os.path.abspath(__file__))


def _config(connection):
    cfg = alembic_config.Config()
    cfg.set_main_option('script_location', SCRIPT_LOCATION)
    cfg.attributes['connection'] = connection
    return cfg


def _engine(engine_or_url):
    if isinstance(engine_or_url, str):
        return sa.create_engine(engine_or_url), True
    return engine_or_url, False


def upgrade(engine_or_url, revision='head'):
    """Create or upgrade the outbox tables to ``revision``."""
    engine, owned = _engine(engine_or_url)
    try:
        with engine.begin() as conn:
            command.upgrade(_config(conn), revision)
    finally:
        if owned:
            engine.dispose()


def current(engine_or_url):
    """The applied revision, or None when nothing was applied."""
    engine, owned = _engine(engine_or_url)
    try:
        with engine.connect() as conn:
            ctx = alembic_migration.MigrationContext.configure(
                conn, opts={'version_table': outbox.VERSION_TABLE})
            return ctx.get_current_revision()
    finally:
        if owned:
            engine.dispose()


def head():
    """The newest revision the scripts define."""
    from alembic import script
    return script.ScriptDirectory(SCRIPT_LOCATION).get_current_head()
