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


"""The legacy ``Session.bulk_*`` helpers.

``bulk_insert_mappings``, ``bulk_update_mappings`` and
``bulk_save_objects`` emit their statements without session events, so
the capture wraps them on the captured session class (a sessionmaker's
own subclass, or the given ``Session`` subclass). Rows named by primary
key are read (and locked) before, and read again after the call; their
difference is the delta. Rows whose key is unknown (generated keys not
returned) invalidate their table.
"""

import functools

from oslo_log import log
import sqlalchemy as sa
from sqlalchemy.orm import attributes

from oslo_publish.capture import frames
from oslo_publish.capture import rows as rows_mod
from oslo_publish import wire

LOG = log.getLogger(__name__)

METHODS = ('bulk_insert_mappings', 'bulk_update_mappings',
           'bulk_save_objects')


class BulkMixin(object):
    """Wraps the ``bulk_*`` helpers of one session class."""

    def _wrap_bulk(self, cls):
        """Wrap ``cls``'s bulk helpers; returns a function undoing it."""
        saved = {}
        for name in METHODS:
            saved[name] = cls.__dict__.get(name)
            orig = getattr(cls, name)
            setattr(cls, name, self._bulk_wrapper(name, orig))

        def undo():
            for name, orig in saved.items():
                if orig is None:
                    delattr(cls, name)
                else:
                    setattr(cls, name, orig)
        return undo

    def _bulk_wrapper(self, name, orig):
        capture = self

        @functools.wraps(orig)
        def wrapper(session, *args, **kwargs):
            # A one-shot iterable is read twice here: hand on a list.
            if len(args) > 1 and name != 'bulk_save_objects' and \
                    not isinstance(args[1], (list, tuple)):
                args = (args[0], list(args[1])) + tuple(args[2:])
            elif args and name == 'bulk_save_objects' and \
                    not isinstance(args[0], (list, tuple)):
                args = (list(args[0]),) + tuple(args[1:])
            try:
                work = capture._bulk_targets(name, args, kwargs)
                before = capture._bulk_before(session, work)
            except Exception as exc:  # noqa: never fail the host
                capture._invalidate(
                    session, capture._bulk_names(name, args, kwargs),
                    'capture_error', exc)
                return orig(session, *args, **kwargs)
            result = orig(session, *args, **kwargs)
            try:
                capture._bulk_after(session, name, work, before)
            except Exception as exc:  # noqa: never fail the host
                capture._invalidate(session, list(before),
                                    'capture_error', exc)
            return result
        return wrapper

    def _bulk_names(self, name, args, kwargs):
        try:
            if name == 'bulk_save_objects':
                objs = args[0] if args else kwargs.get('objects', ())
                mappers = set(attributes.instance_state(o).mapper
                              for o in objs)
            else:
                mappers = [sa.inspect(args[0] if args
                                      else kwargs['mapper'])]
            return set(p.name for m in mappers for p in self._plans(m))
        except Exception:  # noqa: nothing more to name
            return set()

    def _bulk_targets(self, name, args, kwargs):
        """[(plan, items)]: items are mapping dicts or object states."""
        if name == 'bulk_save_objects':
            objs = args[0] if args else kwargs.get('objects', ())
            by_mapper = {}
            for obj in objs:
                state = attributes.instance_state(obj)
                by_mapper.setdefault(state.mapper, []).append(state)
            return [(plan, states) for mapper, states in by_mapper.items()
                    for plan in self._plans(mapper)]
        mapper = sa.inspect(args[0] if args else kwargs['mapper'])
        mappings = args[1] if len(args) > 1 else kwargs['mappings']
        return [(plan, mappings) for plan in self._plans(mapper)]

    @staticmethod
    def _item_key(plan, item):
        if isinstance(item, dict):
            return plan.mapping_key(item)
        key = plan.key_of(plan.current(item), item)
        if key is not None and None in key:
            return None
        return key

    def _bulk_before(self, session, work):
        """{table: {key: row}} of the named rows, locked."""
        before = {}
        if not work:
            return before
        conn = session.connection()
        for plan, items in work:
            keys = set(k for k in (self._item_key(plan, i) for i in items)
                       if k is not None)
            before[plan.name] = rows_mod.read_rows(
                conn, plan.pt.table, plan.pt, keys, lock=True)
        return before

    def _bulk_after(self, session, name, work, before):
        if not work:
            return
        conn = session.connection()
        events = frames.state(session).top
        for plan, items in work:
            keys = set()
            unknown = False
            for item in items:
                key = self._item_key(plan, item)
                if key is None:
                    unknown = True
                else:
                    keys.add(key)
            old = before[plan.name]
            keys.update(old)
            after = rows_mod.read_rows(conn, plan.pt.table, plan.pt, keys)
            pt = plan.pt
            for key in keys:
                was, now = old.get(key), after.get(key)
                if was is None and now is not None:
                    events.append((wire.INSERT, pt.name, key, None, now,
                                   None, True))
                elif was is not None and now is None:
                    events.append((wire.DELETE, pt.name, key, was, None,
                                   None, True))
                elif was is not None:
                    changed = set(c for c in pt.columns
                                  if not rows_mod.same(was[c], now[c]))
                    if changed:
                        events.append((wire.UPDATE, pt.name, key, was, now,
                                       changed, True))
            if unknown:
                self._invalidate(session, [pt.name], 'bulk_no_key')
