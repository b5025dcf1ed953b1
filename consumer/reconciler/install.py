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
#: Rows handed to the state store writer at a time.
PAGE = 1000


def read_table(snap, name, stage=None):
    """``{key tuple: row dict}`` of table ``name`` of ``snap``.

    A key read twice keeps its last row, as in a dict (a table without a
    primary key has the one key ``()``). A streamed load cannot take a
    key twice: then ``stage`` is aborted before the repeated page reaches
    it and the caller writes the whole tables at the install instead
    (``stage.aborted``).

    :param stage: a :class:`consumer.staged_rows.StagedTables` or None.
    :raises consumer.exceptions.SnapshotFailed: the snapshot failed.
    """
    rows = snap.rows(name)
    if stage is not None and stage.aborted:
        stage = None
    if stage is not None:
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
        if stage is None:
            continue
        if count != len(contents):
            stage.abort()
            stage = None
            continue
        stage.add(page)
    return contents
