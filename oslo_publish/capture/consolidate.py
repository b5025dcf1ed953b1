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


"""Commit time: the net effect per row, read back, encoded.

Events are consolidated per row (insert+update -> insert of the final
image, insert+delete -> nothing, update+delete -> delete with the
original before-image, a primary-key change -> delete + insert), missing
after-image columns are read back, and every value is encoded
(:func:`oslo_publish.wire.encode_value`). A row that cannot be published
exactly (no key, a value the wire cannot encode, an incomplete image)
never fails the commit: its table is invalidated instead.
"""

from oslo_log import log

from oslo_publish import exceptions
from oslo_publish import wire
from oslo_publish.capture import rows as rows_mod

LOG = log.getLogger(__name__)


class _Incomplete(exceptions.EncodeError):
    """A full row image lacks columns."""


class ConsolidateMixin(object):
    """Turns a transaction's events into wire changes."""

    def _consolidate(self, session, events):
        """Net effect per row -> (wire changes, tables header)."""
        rows = {}
        invalid = {}
        for op, name, key, before, after, changed, exact in events:
            if op == wire.INVALIDATE:
                invalid.setdefault(name, before)
                continue
            if key is None:
                LOG.warning('A %s on published table %s has no primary '
                            'key value; invalidating the table', op, name)
                invalid.setdefault(name, 'no_key')
                continue
            entry = rows.get((name, key))
            if entry is None:
                existed = op != wire.INSERT
                entry = rows[(name, key)] = rows_mod.Row(existed, before)
            else:
                entry.merge_before(before)
            entry.exists = op != wire.DELETE
            entry.after = after
            entry.exact = exact
            if op == wire.UPDATE:
                if entry.changed is not None:
                    entry.changed.update(changed)
            else:
                entry.changed = None
        self._read_back(session, rows, invalid)
        changes = []
        used = {}
        for (name, key), row in rows.items():
            if name in invalid:
                continue
            try:
                change = self._change(self.tables[name], key, row)
            except exceptions.EncodeError as exc:
                LOG.warning('Invalidating published table %s: %s', name,
                            exc)
                invalid.setdefault(name, 'incomplete_image' if isinstance(
                    exc, _Incomplete) else 'unencodable')
                continue
            if change is not None:
                change['table'] = name
                changes.append(change)
                used[name] = self.tables[name]
        if invalid:
            # Row changes of an invalidated table are superseded by the
            # consumer's re-read of the table at this seq.
            changes = [c for c in changes if c['table'] not in invalid]
            for name, cause in sorted(invalid.items()):
                changes.append(wire.encode_change(
                    wire.invalidation(name, cause)))
                used[name] = self.tables[name]
                self._count_invalidation(name, cause)
        return changes, {n: pt.header() for n, pt in used.items()}

    def _change(self, pt, key, row):
        if row.exists and row.after is None:
            return None  # vanished outside the session
        if row.existed and not row.exists:
            change = {'op': wire.DELETE,
                      'before': self._encode(pt, key, row.orig)}
        elif not row.existed:
            if not row.exists:
                return None
            change = {'op': wire.INSERT,
                      'after': self._encode(pt, key, row.after)}
        else:
            orig, after = row.orig, row.after
            wanted = pt.columns if row.changed is None else row.changed
            changed = [c for c in pt.columns if c in wanted and c in orig
                       and not rows_mod.same(orig[c], after[c])]
            if not changed:
                return None
            change = {'op': wire.UPDATE,
                      'after': self._encode(pt, key, after),
                      'before': self._encode(
                          pt, key, {c: orig[c] for c in changed},
                          full=False),
                      'changed': changed}
        change['key'] = self._encode_key(pt, key)
        return change

    def _encode_key(self, pt, key):
        """The wire key of ``key`` (plain values are their own encoding)."""
        got = self._codecs_cache.get(pt.name)
        if got is None or got[0] is not pt:
            got = self._made_codecs(pt)
        out = []
        for (col, codec), value in zip(got[2], key):
            if value is None or type(value) is codec.plain_type:
                out.append(value)
            else:
                out.append(self._value(pt, key, col, value))
        return out

    def _read_back(self, session, rows, invalid):
        wanted = {}
        for (name, key), row in rows.items():
            if name in invalid:
                continue
            if row.exists and row.after is not None and (
                    not row.exact or
                    len(row.after) < len(self.tables[name].columns)):
                wanted.setdefault(name, []).append(key)
        if not wanted:
            return
        conn = session.connection()
        for name, keys in wanted.items():
            pt = self.tables[name]
            got = rows_mod.read_rows(conn, pt.table, pt, keys)
            for key in keys:
                row = rows[(name, key)]
                row.after = got.get(key)
                if row.after is None:
                    LOG.warning('Row %s of table %s vanished before commit',
                                key, name)

    def _value(self, pt, key, column, value):
        try:
            return pt.encode_value(column, value)
        except (wire.WireError, ValueError, TypeError) as exc:
            raise exceptions.EncodeError(
                'cannot encode column %s of table %s, key %r: %s'
                % (column, pt.name, key, exc)) from exc

    def _codecs(self, pt):
        """``((column, codec), ...)`` of ``pt``'s columns, made once."""
        got = self._codecs_cache.get(pt.name)
        if got is None or got[0] is not pt:
            got = self._made_codecs(pt)
        return got[1]

    def _made_codecs(self, pt):
        """Cache ``(pt, column codecs, primary-key codecs)`` of ``pt``."""
        got = self._codecs_cache[pt.name] = (
            pt, tuple((c, pt.codecs[c]) for c in pt.columns),
            tuple((c, pt.codecs[c]) for c in pt.pk))
        return got

    def _encode(self, pt, key, image, full=True):
        if full and len(image) < len(pt.columns):
            missing = [c for c in pt.columns if c not in image]
            raise _Incomplete(
                'cannot capture the full image of row %r of table %s: '
                'columns %s were not loaded'
                % (key, pt.name, ', '.join(missing)))
        out = {}
        for col, codec in self._codecs(pt):
            if col not in image:
                continue
            value = image[col]
            # None and values of the column's plain type (int, str,
            # bool) are their own encoding (ColumnCodec.plain_type):
            # no call per value for them.
            if value is None or type(value) is codec.plain_type:
                out[col] = value
            else:
                out[col] = self._value(pt, key, col, value)
        return out
