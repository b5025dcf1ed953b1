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


"""After-images of ORM flush UPDATEs from ``RETURNING`` (PostgreSQL).

An ORM update's after-image must be read under the row lock, because
columns the flush did not write may have been changed by another
transaction since the object was loaded. On PostgreSQL the flush's own
single-row ``UPDATE`` gets a ``RETURNING`` of the published columns
instead of a second ``SELECT`` at commit: while a captured session
flushes, its connection carries a slot (``Connection.info``) that an
engine ``before_execute`` listener sees; the returned row is consumed in
``after_execute`` (the ORM only reads the row count). Other statements,
executemany batches and other databases (MariaDB has no ``UPDATE ...
RETURNING``; pysqlite's row count needs the rows unread) keep the read
back at commit.

The ORM executes the same (memoized) UPDATE object for every flush of a
table, so the statement with ``RETURNING`` is made once per such object
and reused (:data:`_CACHE_SIZE` at most): SQLAlchemy then finds its
compiled form by a memoized cache key instead of building a new
statement, generating its cache key and looking it up at every flush.

The engine listeners see every statement of the engine (the host's
queries, the relay's cycles); while no captured flush is running in the
process they return at once, without looking at the connection.
"""

from sqlalchemy import event
from sqlalchemy.sql import dml

SLOT = 'oslo_publish.capture.returning'

#: Most UPDATE objects whose RETURNING variant is kept (the ORM makes one
#: per mapped table; statements with SQL expression values are new at
#: every flush, hence the bound).
_CACHE_SIZE = 256


class ReturningMixin(object):
    """Engine listeners adding ``RETURNING`` to ORM flush UPDATEs."""

    def _returning_open(self, session, st):
        """Open the slot for the flush about to run (PostgreSQL only)."""
        conn = session.connection()
        if conn.dialect.name != 'postgresql':
            return None
        engine = conn.engine
        if engine not in self._engines:
            event.listen(engine, 'before_execute', self._on_before_execute,
                         retval=True)
            event.listen(engine, 'after_execute', self._on_after_execute)
            self._engines.append(engine)
        returned = {}
        conn.info[SLOT] = returned
        st.returning = (conn, returned)
        # Set operations are atomic: flushes of other threads may open
        # and close theirs meanwhile.
        self._open_slots.add(id(returned))
        return returned

    def _returning_close(self, st):
        """Close the slot; rows returned by the flush: {(t, key): row}."""
        if st is None or st.returning is None:
            return {}
        conn, returned = st.returning
        st.returning = None
        self._open_slots.discard(id(returned))
        try:
            if conn.info.get(SLOT) is returned:
                del conn.info[SLOT]
        except Exception:  # noqa: the connection is gone: nothing to undo
            pass
        returned.pop(None, None)
        return returned

    def _returning_detach(self):
        while self._engines:
            engine = self._engines.pop()
            for name, fn in (('before_execute', self._on_before_execute),
                             ('after_execute', self._on_after_execute)):
                if event.contains(engine, name, fn):
                    event.remove(engine, name, fn)

    def _on_before_execute(self, conn, elem, multiparams, params,
                           execution_options):
        if not self._open_slots:
            return elem, multiparams, params
        returned = conn.info.get(SLOT)
        if returned is None or multiparams or \
                not isinstance(elem, dml.Update):
            return elem, multiparams, params
        cached = self._returning_cache.get(id(elem))
        if cached is None or cached[0] is not elem:
            cached = self._with_returning(elem)
        if cached[1] is None:
            return elem, multiparams, params
        returned[None] = cached
        return cached[1], multiparams, params

    def _with_returning(self, elem):
        """``(elem, elem with RETURNING or None, table)``, cached."""
        new = pt = None
        try:
            pt = self._published(elem.table)
            if pt is not None and not elem._returning and \
                    not elem._return_defaults:
                new = elem.returning(*[elem.table.c[c] for c in pt.columns])
        except Exception:  # noqa: leave the statement as the ORM made it
            new = None
        cached = (elem, new, pt)
        cache = self._returning_cache
        if len(cache) >= _CACHE_SIZE:
            cache.clear()
        # Keyed by identity and holding ``elem``: the id is not reused
        # while the entry lives.
        cache[id(elem)] = cached
        return cached

    def _on_after_execute(self, conn, elem, multiparams, params,
                          execution_options, result):
        if not self._open_slots:
            return
        returned = conn.info.get(SLOT)
        if returned is None:
            return
        pending = returned.pop(None, None)
        if pending is None or pending[1] is not elem:
            return
        pt = pending[2]
        columns, pk, name = pt.columns, pt.pk, pt.name
        for values in result.fetchall():
            row = dict(zip(columns, values))
            returned[(name, tuple([row[c] for c in pk]))] = row
