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

"""Reconciler and bad-input tests with the state store on PostgreSQL, MariaDB.

tests/unit runs them with the state store on SQLite.
"""

from tests.unit import test_migrations
from tests.unit import test_reconciler
from tests.unit import test_verify


class TestOrderingPostgreSQL(test_reconciler.TestOrdering):
    STATE_BACKEND = 'postgresql'


class TestOrderingMySQL(test_reconciler.TestOrdering):
    STATE_BACKEND = 'mysql'


class TestResumePostgreSQL(test_reconciler.TestResume):
    STATE_BACKEND = 'postgresql'


class TestResumeMySQL(test_reconciler.TestResume):
    STATE_BACKEND = 'mysql'


class TestResyncPolicyPostgreSQL(test_reconciler.TestResyncPolicy):
    STATE_BACKEND = 'postgresql'


class TestResyncPolicyMySQL(test_reconciler.TestResyncPolicy):
    STATE_BACKEND = 'mysql'


class TestRejectionReasonsPostgreSQL(test_verify.TestRejectionReasons):
    STATE_BACKEND = 'postgresql'


class TestRejectionReasonsMySQL(test_verify.TestRejectionReasons):
    STATE_BACKEND = 'mysql'


class TestMigrationsPostgreSQL(test_migrations.TestReconcilerMigrations):
    STATE_BACKEND = 'postgresql'


class TestMigrationsMySQL(test_migrations.TestReconcilerMigrations):
    STATE_BACKEND = 'mysql'
