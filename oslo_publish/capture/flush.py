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


"""ORM flushes: ``before_flush`` / ``after_flush``.

Inserts with their after-image, updates with the original values and the
after-image, deletes with the full before-image. Originals come from the
object state; only when a dirty or deleted object has unloaded columns is
its row read before the flush (one query per table). A failure here never
fails the flush: the tables of the flushed objects are invalidated.
"""

import itertools

from sqlalchemy.orm import attributes

from oslo_publish.capture import frames
from oslo_publish.capture import rows as rows_mod
from oslo_publish import wire


class FlushMixin(object):
    """Listeners of the ORM unit of work."""

    def _on_before_flush(self, session, flush_context, instances):
        try:
            self._before_flush(session)
        except Exception as exc:  # noqa: never fail the host's flush
            names = set()
            for obj in itertools.chain(session.dirty, session.deleted):
                state = attributes.instance_state(obj)
                names.update(p.name for p in self._plans(state.mapper))
            frames.state(session).pre = None
            self._invalidate(session, names, 'capture_error', exc)

    def _before_flush(self, session):
        pre = None
        to_load = {}
        for obj in itertools.chain(session.dirty, session.deleted):
            state = attributes.instance_state(obj)
            if state.key is None:
                continue
            for plan in self._plans(state.mapper):
                orig, missing = plan.original(state)
                if pre is None:
                    pre = {}
                pre[(state, plan.name)] = orig
                if missing:
                    to_load.setdefault(plan, []).append((state, orig))
        if to_load:
            self._preload(session, to_load)
        st = session.info.get(frames.KEY)
        if pre is not None or (st is not None and st.pre is not None):
            frames.state(session).pre = pre
        if pre is not None and self.reread_updates:
            self._returning_open(session, frames.state(session))

    def _preload(self, session, to_load):
        conn = session.connection()
        for plan, items in to_load.items():
            keyed = {}
            for state, orig in items:
                key = plan.key_of(orig, state)
                if key is not None:
                    keyed.setdefault(key, []).append(orig)
            rows = rows_mod.read_rows(conn, plan.pt.table, plan.pt, keyed)
            for key, origs in keyed.items():
                row = rows.get(key)
                if row is None:
                    continue
                for orig in origs:
                    for col, value in row.items():
                        orig.setdefault(col, value)

    def _on_after_flush(self, session, flush_context):
        st = session.info.get(frames.KEY)
        pre = None
        if st is not None:
            pre, st.pre = st.pre, None
        pre = pre or {}
        returned = self._returning_close(st)
        events = None
        try:
            for state, (isdelete, listonly) in \
                    flush_context.states.items():
                plans = self._plans(state.mapper)
                if not plans:
                    continue
                if events is None:
                    events = frames.state(session).top
                for plan in plans:
                    self._flushed(plan, state, isdelete, listonly, pre,
                                  events, returned)
        except Exception as exc:  # noqa: never fail the host's flush
            names = set()
            for state in flush_context.states:
                names.update(p.name for p in self._plans(state.mapper))
            self._invalidate(session, names, 'capture_error', exc)
            events = frames.state(session).top
        if events and st is not None and st.sealed:
            # A flush after our before_commit (another before_commit
            # listener changed objects): stage its deltas as well.
            self._stage(session, st)

    def _flushed(self, plan, state, isdelete, listonly, pre, events,
                 returned):
        name = plan.name
        if isdelete:
            if state.key is None:
                return
            orig = pre.get((state, name))
            if orig is None:
                orig = plan.original(state)[0]
            events.append((wire.DELETE, name, plan.key_of(orig, state),
                           orig, None, None, True))
        elif state.key is None:
            after = plan.current(state, inserted=True)
            events.append((wire.INSERT, name, plan.key_of(after), None,
                           after, None, True))
        elif not listonly:
            orig = pre.get((state, name))
            if orig is None:
                orig = plan.original(state)[0]
            after = plan.current(state)
            changed = set(c for c, v in after.items()
                          if c in orig and not rows_mod.same(orig[c], v))
            if not changed:
                return
            # Expired by the flush: server-side onupdate values.
            changed.update(c for c in orig if c not in after)
            old_key = plan.key_of(orig, state)
            new_key = plan.key_of(after, state)
            if old_key != new_key:
                events.append((wire.DELETE, name, old_key, orig, None, None,
                               True))
                events.append((wire.INSERT, name, new_key, None, after,
                               None, False))
            else:
                row = returned.get((name, new_key)) if returned else None
                if row is not None:
                    # RETURNING of the flush's own UPDATE: exact.
                    events.append((wire.UPDATE, name, new_key, orig, row,
                                   changed, True))
                    return
                # Not exact: columns this flush did not write may have
                # been changed by a concurrent transaction since they were
                # loaded; the after-image is read back under the row lock.
                events.append((wire.UPDATE, name, new_key, orig, after,
                               changed, not self.reread_updates))
