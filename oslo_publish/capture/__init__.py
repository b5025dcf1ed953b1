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


"""Capture: row deltas of allow-listed tables, taken from session events.

A :class:`Capture` listens to the events of ONE target (an oslo.db
enginefacade sessionmaker, a SQLAlchemy ``sessionmaker`` or a ``Session``
subclass); other sessions of the process are not touched.

One module per concept:

* :mod:`.frames` -- per-transaction state, savepoint frames;
* :mod:`.flush` -- ORM flushes;
* :mod:`.returning` -- after-images of flush UPDATEs from ``RETURNING``;
* :mod:`.statements` -- ORM/Core statements through the session
  (bulk UPDATE/DELETE, INSERT forms, ``text()`` DML);
* :mod:`.bulk` -- the legacy ``Session.bulk_*`` helpers;
* :mod:`.consolidate` -- the net effect per row and its encoding at
  ``before_commit``;
* :mod:`.rows` -- plans, key reads and locks.

Capture never fails a statement or a commit of the host (DESIGN.md,
invariant 8): whatever it cannot capture exactly is published as a table
invalidation (:func:`oslo_publish.wire.invalidation`) in that
transaction's delta, at its seq, logged and counted in
``oslo_publish_capture_invalidations``. Only writing the delta itself
(the outbox row) can fail the commit: a delta is never dropped silently.
"""

import datetime
import itertools
import threading
import uuid
import weakref

from oslo_log import log
from sqlalchemy import event
from sqlalchemy import orm

from oslo_publish.capture import bulk
from oslo_publish.capture import consolidate
from oslo_publish.capture import flush
from oslo_publish.capture import frames
from oslo_publish.capture import returning
from oslo_publish.capture import rows
from oslo_publish.capture import statements
from oslo_publish import exceptions

LOG = log.getLogger(__name__)

pk_criteria = rows.pk_criteria
read_rows = rows.read_rows

#: target -> the Capture listening to it (one per target).
_ATTACHED = weakref.WeakKeyDictionary()
_ATTACHED_LOCK = threading.Lock()


class Capture(flush.FlushMixin, returning.ReturningMixin,
              statements.StatementMixin, bulk.BulkMixin,
              consolidate.ConsolidateMixin):
    """Session event listeners capturing deltas of published tables.

    :param tables: ``{name: PublishedTable}``.
    :param sink: the delivery sink (``stage``, ``committed``,
        ``discarded``).
    :param stream: the stream name (metric label).
    :param metrics: a :class:`~oslo_publish.metrics.HostMetrics` or None.
    :param activity: a :class:`~oslo_publish.relay.pacing.Activity` told
        when the target's sessions begin and end transactions (the
        publishing thread paces itself while they run), or None.
    """

    _EVENTS = ('before_flush', 'after_flush', 'do_orm_execute',
               'after_transaction_create', 'after_transaction_end',
               'before_commit', 'after_commit')

    def __init__(self, tables, sink, stream=None, metrics=None,
                 reread_updates=True, activity=None):
        self.tables = tables
        self.activity = activity
        self.sink = sink
        self.stream = stream or ''
        self.metrics = metrics
        self.reread_updates = reread_updates
        self._plans_cache = {}
        self._returning_cache = {}
        #: ids of the RETURNING slots open now (:mod:`.returning`).
        self._open_slots = set()
        self._codecs_cache = {}
        self._counters = None
        self._targets = []
        self._engines = []

    # ------------------------------------------------------- attach

    def attach(self, target):
        """Listen to ``target`` (a sessionmaker or Session subclass).

        :raises UnsupportedTarget: another capture listens to it already
            (each transaction would be published twice).
        """
        with _ATTACHED_LOCK:
            if _ATTACHED.get(target) is not None:
                raise exceptions.UnsupportedTarget(
                    'oslo.publish is already installed on %r; stop that '
                    'handle first' % (target,))
            _ATTACHED[target] = self
        for name in self._EVENTS:
            event.listen(target, name, getattr(self, '_on_' + name))
        cls = target.class_ if isinstance(target, orm.sessionmaker) \
            else target
        undo = None
        if isinstance(cls, type) and issubclass(cls, orm.Session) and \
                cls is not orm.Session:
            undo = self._wrap_bulk(cls)
        self._targets.append((target, undo))

    def detach(self):
        """Remove every listener this capture added."""
        while self._targets:
            target, undo = self._targets.pop()
            if undo is not None:
                undo()
            for name in self._EVENTS:
                fn = getattr(self, '_on_' + name)
                if event.contains(target, name, fn):
                    event.remove(target, name, fn)
            with _ATTACHED_LOCK:
                if _ATTACHED.get(target) is self:
                    del _ATTACHED[target]
        self._returning_detach()

    # ------------------------------------------------------- mapping

    def _plans(self, mapper):
        plans = self._plans_cache.get(mapper)
        if plans is None:
            plans = []
            for table in mapper.tables:
                pt = self.tables.get(getattr(table, 'fullname', None))
                if pt is not None:
                    plans.append(rows.Plan(pt, mapper, table))
            plans = self._plans_cache[mapper] = tuple(plans)
        return plans

    def _published(self, table):
        name = getattr(table, 'fullname', None)
        return self.tables.get(name) if name else None

    # ------------------------------------------------------- invalidation

    def _invalidate(self, session, names, cause, exc=None):
        """Invalidate tables ``names`` in ``session``'s transaction."""
        names = sorted(set(n for n in names if n in self.tables))
        if exc is not None:
            LOG.error('Capture failed (%(exc)r); invalidating published '
                      'tables %(tables)s', {'exc': exc,
                                            'tables': ', '.join(names)},
                      exc_info=exc)
        top = frames.state(session).top
        for name in names:
            top.append(frames.invalidation_event(name, cause))

    def _count_invalidation(self, name, cause):
        LOG.info('Published table %s is invalidated in this transaction '
                 '(%s)', name, cause)
        if self.metrics is not None:
            self.metrics.capture_invalidations.labels(
                self.stream, name, cause).inc()

    # ------------------------------------------------------- transactions

    def _on_after_transaction_create(self, session, transaction):
        if transaction.nested:
            frames.state(session).frames.append(frames.Frame(transaction))
        elif transaction.parent is None and self.activity is not None:
            self.activity.begin(transaction)

    def _on_after_transaction_end(self, session, transaction):
        if transaction.parent is None and not transaction.nested and \
                self.activity is not None:
            self.activity.end(transaction)
        st = session.info.get(frames.KEY)
        if st is None:
            return
        if transaction.nested:
            for pos in range(len(st.frames) - 1, 0, -1):
                frame = st.frames[pos]
                if frame.tx is transaction:
                    del st.frames[pos:]
                    if frame.released:
                        st.frames[pos - 1].events.extend(frame.events)
                    break
        elif transaction.parent is None:
            del session.info[frames.KEY]
            self._returning_close(st)
            if st.staged and not st.committed:
                self.sink.discarded(session)

    def _on_after_commit(self, session):
        st = session.info.get(frames.KEY)
        if st is None:
            return
        nested = session.get_nested_transaction()
        if nested is not None:
            for frame in st.frames:
                if frame.tx is nested:
                    frame.released = True
            return
        if st.staged:
            st.committed = True
            self._ended(session)
            self.sink.committed(session)

    def _ended(self, session):
        """Tell the activity the root transaction is over, before waking.

        ``after_transaction_end`` comes after ``after_commit``: a relay
        woken by the commit would otherwise still see the transaction in
        flight and pace itself for it (waiting for the writer's thread to
        end it: two more thread switches before the cycle).
        """
        activity = self.activity
        if activity is None:
            return
        transaction = session.get_transaction()
        if transaction is not None and transaction.parent is None:
            activity.end(transaction)

    def _on_before_commit(self, session):
        if session.get_nested_transaction() is not None:
            return
        session.flush()
        st = session.info.get(frames.KEY)
        if st is None or st.sealed:
            return
        self._stage(session, st)
        st.sealed = True

    def _stage(self, session, st):
        """Hand the pending events of ``session`` to the sink.

        The events are kept until the sink took them, so a commit that
        failed in the sink can be retried.
        """
        frames_ = st.frames
        if len(frames_) == 1:
            events = frames_[0].events  # replaced, not emptied, below
        else:
            events = list(itertools.chain.from_iterable(
                f.events for f in frames_))
        if not events:
            return
        try:
            changes, tables = self._consolidate(session, events)
        except Exception as exc:  # noqa: never fail the host's commit
            names = set(e[1] for e in events)
            LOG.error('Capture failed at commit (%(exc)r); invalidating '
                      'published tables %(tables)s',
                      {'exc': exc, 'tables': ', '.join(sorted(names))},
                      exc_info=exc)
            changes, tables = self._consolidate(
                session, [frames.invalidation_event(n, 'capture_error')
                          for n in names])
        if changes:
            committed_at = datetime.datetime.now(datetime.timezone.utc)
            self.sink.stage(session, uuid.uuid4().hex, committed_at,
                            changes, tables)
            st.staged = True
            if self.metrics is not None:
                counters = self._counters
                if counters is None:
                    # Labelled once: labels() is a locked lookup.
                    counters = self._counters = (
                        self.metrics.transactions_captured.labels(
                            self.stream),
                        self.metrics.deltas_captured.labels(self.stream))
                counters[0].inc()
                counters[1].inc(len(changes))
        for frame in st.frames:
            frame.events = []
