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

"""consumer.reconciler: the Reconciler is composed of one part per concept.

The behaviour of the parts is tested through the Reconciler in
``tests.unit.test_reconciler`` (and ``test_intake``, ``test_migrations``);
these tests guard how the parts fit together.
"""

import inspect

from consumer import reconciler
from consumer.reconciler import apply
from consumer.reconciler import common
from consumer.reconciler import core
from consumer.reconciler import deltas
from consumer.reconciler import install
from consumer.reconciler import migrate
from consumer.reconciler import resume
from consumer.reconciler import resync
from consumer.reconciler import settle
from consumer.reconciler import watch
from tests import base

PARTS = (deltas.Deltas, apply.Apply, watch.Watch, settle.Settle,
         resume.Resume, resync.Resync, install.Install, migrate.Migrate)


def _own_methods(cls):
    return {name for name, value in vars(cls).items()
            if inspect.isfunction(value)}


class TestLayout(base.TestCase):

    def test_reconciler_is_made_of_the_parts(self):
        """Every part is a base of the Reconciler."""
        for part in PARTS:
            self.assertTrue(issubclass(core.Reconciler, part), part)

    def test_no_part_overrides_another(self):
        """A method is defined by one part (or core) only."""
        seen = {}
        for cls in PARTS + (core.Reconciler,):
            for name in _own_methods(cls):
                self.assertNotIn(name, seen, '%s defined by %s and %s'
                                 % (name, seen.get(name), cls.__name__))
                seen[name] = cls.__name__

    def test_parts_keep_no_state_of_their_own(self):
        """Parts define no __init__: the Reconciler owns every attribute."""
        for part in PARTS:
            self.assertNotIn('__init__', vars(part), part)

    def test_public_names_stay_importable(self):
        """The package and core re-export the names of .common."""
        for name in ('INITIAL', 'SNAPSHOTTING', 'LIVE', 'RESYNCING',
                     'STOPPED', 'CAUSES', 'SNAPSHOT_BUFFER', 'BATCH_LIMIT',
                     'MAX_TICK', 'FLUSH_TIMEOUT', 'StateUnavailable'):
            self.assertIs(getattr(common, name), getattr(core, name))
            self.assertIs(getattr(common, name), getattr(reconciler, name))
        self.assertIs(core.Reconciler, reconciler.Reconciler)

    def test_public_methods_of_the_entry_point(self):
        """The Reconciler's public API (unchanged by the split)."""
        public = {name for name in dir(core.Reconciler)
                  if not name.startswith('_')}
        self.assertEqual({'add_migration_step', 'applied', 'durable',
                          'handle', 'handle_many', 'poll', 'resync',
                          'settle', 'start', 'status', 'status_info', 'stop',
                          'synced', 'wait_durable', 'wait_synced'}, public)


class TestIsDbError(base.TestCase):

    def test_database_driver_errors(self):
        """Errors of SQLAlchemy and the DB drivers count, others do not."""
        import sqlite3

        import sqlalchemy.exc

        self.assertTrue(common.is_db_error(sqlite3.OperationalError('x')))
        self.assertTrue(common.is_db_error(
            sqlalchemy.exc.OperationalError('s', {}, Exception())))
        self.assertFalse(common.is_db_error(ValueError('x')))
        self.assertFalse(common.is_db_error(common.StateUnavailable('x')))
