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

"""Reading a snapshot's table for an install.

:func:`read_table` collects a table's rows for the cache and, when the
reconciler stages the state store write
(:class:`consumer.staged_rows.StagedTables`), hands every page to it as
soon as it is read, so the store is written while the next pages are
still coming.
"""

import itertools

from consumer import exceptions

#: Rows handed to the state store writer at a time.
PAGE = 1000


def read_table(snap, name, stage=None):
    """``{key tuple: row dict}`` of table ``name`` of ``snap``.

    :param stage: a :class:`consumer.staged_rows.StagedTables` or None.
    :raises consumer.exceptions.SnapshotFailed: the snapshot failed, or
        repeated a key (which a streamed load could not store).
    """
    rows = snap.rows(name)
    if stage is None:
        return dict(rows)
    stage.table(name)
    contents = {}
    count = 0
    islice = itertools.islice
    while True:
        page = list(islice(rows, PAGE))
        if not page:
            break
        count += len(page)
        contents.update(page)
        stage.add(page)
    if count != len(contents):
        raise exceptions.SnapshotFailed(
            'snapshot of %s repeats a primary key' % name)
    return contents
