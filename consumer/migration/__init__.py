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

"""Alembic migrations of the consumer's state store.

The scripts live in this package (found through its path, no ini file
needed) and record their revision in their own version table,
:data:`VERSION_TABLE`, so the state store can share a database with
anything else, including the host's outbox.
"""

import os

from alembic import command
from alembic import config as alembic_config
from alembic import migration

VERSION_TABLE = 'consumer_alembic_version'

SCRIPT_LOCATION = os.path.dirname(os.path.abspath(__file__))


def alembic_cfg(connection):
    """An alembic Config running this package's scripts on ``connection``."""
    cfg = alembic_config.Config()
    cfg.set_main_option('script_location', SCRIPT_LOCATION)
    cfg.attributes['connection'] = connection
    return cfg


def upgrade(engine, revision='head'):
    """Upgrade the state store schema on ``engine`` to ``revision``."""
    with engine.begin() as connection:
        command.upgrade(alembic_cfg(connection), revision)


def current(engine):
    """The revision the state store on ``engine`` is at (None if empty)."""
    with engine.connect() as connection:
        context = migration.MigrationContext.configure(
            connection, opts={'version_table': VERSION_TABLE})
        return context.get_current_revision()
