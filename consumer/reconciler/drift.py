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

"""Drift: rows where a snapshot differs from the cache (periodic resync)."""

import hashlib
import json

from oslo_publish import wire


def row_hash(row):
    """Stable hash of a decoded row (its canonical wire encoding)."""
    if row is None:
        return None
    text = json.dumps(wire.encode_row(dict(row)), sort_keys=True,
                      separators=(',', ':'), allow_nan=False)
    return hashlib.sha1(text.encode('utf-8')).hexdigest()


def count_drift(view, in_flight, tables, contents):
    """Rows where the snapshot differs from cache + in-flight deltas.

    :param view: a cache view taken when the snapshot was requested.
    :param in_flight: buffered transactions (with changes) the
        snapshot already contains, in seq order.
    :param tables: names of the snapshot's tables.
    :param contents: {table: {key: row}} read from the snapshot.
    :returns: {table: count} of the tables with differences.

    Rows are compared by value first and, when they differ, by row hash
    (so that e.g. NaN equals NaN). Table invalidations are not row
    changes and are skipped.
    """
    drift = {}
    for table in tables:
        expected = dict(view.rows(table))
        for item in in_flight:
            for change in item.changes:
                if change.table != table or change.op == wire.INVALIDATE:
                    continue
                if change.op == wire.DELETE:
                    expected.pop(change.key, None)
                else:
                    expected[change.key] = change.after
        fresh = contents[table]
        count = 0
        for key in set(expected) | set(fresh):
            old, new = expected.get(key), fresh.get(key)
            if old != new and row_hash(old) != row_hash(new):
                count += 1
        if count:
            drift[table] = count
    return drift
