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

"""What the reconciler's parts share: states, limits, the store error.

The state machine positions of a stream (:data:`INITIAL` ..
:data:`STOPPED`), the resync causes, the buffer and batch limits and
:class:`StateUnavailable`. Re-exported by :mod:`consumer.reconciler`.
"""

from consumer import exceptions

INITIAL = 'initial'
SNAPSHOTTING = 'snapshotting'
LIVE = 'live'
RESYNCING = 'resyncing'
STOPPED = 'stopped'

CAUSES = ('initial', 'gap', 'heartbeat', 'inactivity', 'periodic',
          'schema', 'manual', 'epoch', 'invalidate')

#: Largest number of transactions buffered while a snapshot is read.
SNAPSHOT_BUFFER = 100000
#: Largest number of transactions committed in one state transaction.
BATCH_LIMIT = 500
#: Longest sleep of the worker between two timer checks.
MAX_TICK = 0.5
#: Longest wait for the persister before a snapshot is installed.
FLUSH_TIMEOUT = 10.0


class StateUnavailable(exceptions.ConsumerError):
    """The state store failed; the message should be redelivered."""


def is_db_error(exc):
    """True when ``exc`` comes from a database driver or SQLAlchemy."""
    module = type(exc).__module__ or ''
    return module.startswith(('sqlalchemy', 'oslo_db', 'pymysql',
                              'psycopg2', 'sqlite3'))
