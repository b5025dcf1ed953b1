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

"""One decoded transaction's row events -> wire changes (every reader).

A log gives one event per row and statement. :class:`TransactionBuilder`
keeps the net effect per row exactly as session capture does
(insert + update -> insert of the final image, insert + delete ->
nothing, update + delete -> delete with the original before-image, a
primary-key change -> delete + insert; an update that changed no
published column -> nothing), drops excluded columns and encodes every
value with its column's codec (:meth:`PublishedTable.encode_value`), so
the bytes equal what session capture and snapshots produce. A value
that cannot be encoded, or a TRUNCATE, invalidates the table in that
transaction instead (DESIGN invariant 8).
"""

from oslo_log import log

from oslo_publish.capture import rows as rows_mod
from oslo_publish import wire

LOG = log.getLogger(__name__)

INSERT, UPDATE, DELETE = wire.INSERT, wire.UPDATE, wire.DELETE


class _Row(object):
    __slots__ = ('existed', 'orig', 'exists', 'after')

    def __init__(self, existed, orig):
        self.existed = existed
        self.orig = orig
        self.exists = existed
        self.after = None


class TransactionBuilder(object):
    """Collects a transaction's row events; :meth:`finish` encodes them.

    :param tables: ``{name: PublishedTable}``; events of other tables
        are ignored.
    """

    def __init__(self, tables):
        self.tables = tables
        self._rows = {}
        self._invalid = {}

    def __bool__(self):
        return bool(self._rows or self._invalid)

    def _key(self, pt, image):
        return tuple(image[c] for c in pt.pk)

    def add(self, table, op, before, after):
        """One row event; images are ``{column: Python value}``.

        ``before`` is the full old row (update, delete), ``after`` the
        full new row (insert, update); other columns than the published
        ones may be present and are dropped.
        """
        pt = self.tables.get(table)
        if pt is None or table in self._invalid:
            return
        if op == UPDATE:
            old, new = self._key(pt, before), self._key(pt, after)
            if old != new:
                self.add(table, DELETE, before, None)
                self.add(table, INSERT, None, after)
                return
        image = after if op != DELETE else before
        key = self._key(pt, image)
        row = self._rows.get((table, key))
        if row is None:
            existed = op != INSERT
            row = self._rows[(table, key)] = _Row(
                existed, dict(before) if existed else None)
        row.exists = op != DELETE
        row.after = dict(after) if op != DELETE else None

    def invalidate(self, table, cause):
        """Publish an invalidation of ``table`` in this transaction."""
        if table in self.tables:
            self._invalid.setdefault(table, cause)

    def finish(self):
        """-> ``(changes, tables header)`` (both empty: nothing to send)."""
        changes = []
        used = {}
        invalid = self._invalid
        for (name, key), row in self._rows.items():
            if name in invalid:
                continue
            pt = self.tables[name]
            try:
                change = self._change(pt, key, row)
            except (wire.WireError, ValueError, TypeError) as exc:
                LOG.warning('Invalidating published table %s: cannot '
                            'encode row %r: %s', name, key, exc)
                invalid[name] = 'unencodable'
                continue
            if change is not None:
                changes.append(change)
                used[name] = pt
        if invalid:
            changes = [c for c in changes if c['table'] not in invalid]
            for name, cause in sorted(invalid.items()):
                changes.append(wire.encode_change(
                    wire.invalidation(name, cause)))
                used[name] = self.tables[name]
        return changes, {n: pt.header() for n, pt in used.items()}

    @staticmethod
    def _encode(pt, image, columns):
        return {c: pt.encode_value(c, image[c]) for c in columns}

    def _change(self, pt, key, row):
        if row.existed and not row.exists:
            change = {'table': pt.name, 'op': DELETE,
                      'before': self._encode(pt, row.orig, pt.columns)}
        elif not row.existed:
            if not row.exists:
                return None
            change = {'table': pt.name, 'op': INSERT,
                      'after': self._encode(pt, row.after, pt.columns)}
        else:
            orig, after = row.orig, row.after
            changed = [c for c in pt.columns
                       if not rows_mod.same(orig[c], after[c])]
            if not changed:
                return None
            change = {'table': pt.name, 'op': UPDATE,
                      'after': self._encode(pt, after, pt.columns),
                      'before': self._encode(pt, orig, changed),
                      'changed': changed}
        change['key'] = pt.encode_key(key)
        return change
