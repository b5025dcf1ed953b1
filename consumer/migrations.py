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

"""Resumption migrations: bring stored tables in line with the publisher.

The consumer holds a set of ``(table, schema_version)`` per stream (the
positions of the state store, mirrored in the reconciler). When what the
publisher sends differs, :func:`migrate` finds the inconsistencies, in
this order::

    removed  (stored, no longer published)
    added    (published, not stored)
    changed  (both, different schema version)

and resolves the first one by calling the hook of that kind of every
registered :class:`MigrationStep` in turn (user steps in registration
order, then :class:`DefaultStep`) until one resolved it; then it looks
again, until nothing is inconsistent or :data:`MAX_ROUNDS` rounds passed
(:class:`consumer.exceptions.MigrationError`).

Steps act through a :class:`Context`; the reconciler applies its plan
(state store first, then cache, then change handlers) in one go.
"""

from oslo_log import log
from stevedore import extension

from consumer import exceptions

LOG = log.getLogger(__name__)

NAMESPACE = 'consumer.migrations'
#: Most rounds :func:`migrate` runs before it gives up.
MAX_ROUNDS = 10

REMOVED = 'removed'
ADDED = 'added'
CHANGED = 'changed'

_registered = []
_loaded = []


class MigrationStep(object):
    """Base of migration steps; every hook defaults to "not handled".

    A hook resolves the inconsistency by calling :class:`Context`
    methods (``drop``, ``snapshot``, ``replace``, ``accept``). A hook
    that leaves it unresolved passes it to the next step.
    """

    def removed(self, ctx, table, old):
        """``table`` (stored at version ``old``) is no longer published."""

    def added(self, ctx, table, new):
        """``table`` is published at version ``new`` and not stored."""

    def changed(self, ctx, table, old, new):
        """``table`` is stored at ``old`` and now published at ``new``."""


class LogStep(MigrationStep):
    """Logs every inconsistency; resolves none (entry point ``log``)."""

    def removed(self, ctx, table, old):
        LOG.info('Stream %s: table %s is no longer published (was %s)',
                 ctx.stream, table, old)

    def added(self, ctx, table, new):
        LOG.info('Stream %s: table %s is published (version %s)',
                 ctx.stream, table, new)

    def changed(self, ctx, table, old, new):
        LOG.info('Stream %s: table %s changed version %s -> %s',
                 ctx.stream, table, old, new)


class ColumnDefaults(MigrationStep):
    """Reshape held rows to the new columns instead of a resync.

    ``defaults``: ``{table: {column: value}}``. When a table's version
    changed because columns were added or dropped, and every column a
    held row lacks has a default here, the rows lose the columns no
    longer published and get the defaults of the new ones. Anything else
    (a retyped column, no default, an empty table) is left to the next
    step. A column added together with a retyped one is not detected:
    use it only for tables whose migrations do not retype.
    """

    def __init__(self, defaults):
        self.defaults = defaults

    def changed(self, ctx, table, old, new):
        columns = [c[0] for c in ctx.published[table].get('columns') or ()]
        rows = ctx.rows(table)
        names = set(columns)
        defaults = self.defaults.get(table, {})
        if not rows or all(set(r) == names for r in rows.values()) or any(
                c not in row and c not in defaults
                for row in rows.values() for c in columns):
            return
        for key, row in rows.items():
            rows[key] = {c: row[c] if c in row else defaults[c]
                         for c in columns}
        ctx.replace(table, rows)


class DefaultStep(MigrationStep):
    """Removed: drop. Added: snapshot. Changed: resynchronise."""

    def removed(self, ctx, table, old):
        ctx.drop(table)

    def added(self, ctx, table, new):
        ctx.snapshot(table)

    def changed(self, ctx, table, old, new):
        ctx.snapshot(table)


def register(step):
    """Register ``step`` (a :class:`MigrationStep`) for every consumer."""
    _registered.append(step)


def unregister(step):
    """Remove a step added by :func:`register`."""
    _registered.remove(step)


def steps():
    """Registered steps: entry points, then :func:`register` ones.

    :func:`migrate` runs :class:`DefaultStep` after all of them.
    """
    if not _loaded:
        manager = extension.ExtensionManager(
            NAMESPACE, invoke_on_load=True,
            on_load_failure_callback=_load_failed)
        _loaded.append([ext.obj for ext in manager])
    return list(_loaded[0]) + list(_registered)


def _load_failed(manager, entrypoint, exc):
    raise exceptions.MigrationError('cannot load migration step %s: %s'
                                    % (entrypoint, exc))


def inconsistencies(stored, published):
    """Ordered ``[(kind, table, old, new)]`` between two version maps.

    ``stored`` and ``published`` map table -> schema version.
    """
    found = [(REMOVED, t, stored[t], None)
             for t in sorted(set(stored) - set(published))]
    found += [(ADDED, t, None, published[t])
              for t in sorted(set(published) - set(stored))]
    found += [(CHANGED, t, stored[t], published[t])
              for t in sorted(set(stored) & set(published))
              if stored[t] != published[t]]
    return found


class Context(object):
    """What a step sees and does; collects the plan.

    :param stream: the stream name.
    :param versions: stored ``{table: schema_version}``.
    :param published: ``{table: {"pk", "columns", "version"}}`` the
        publisher sends now (from the snapshot the migration opened).
    :param view: the cache view (rows as applied so far).
    :param read: ``read(table) -> {key: row}`` from that snapshot.
    :param in_flight: the changes after the view up to the snapshot's
        watermark, in order (:class:`oslo_publish.wire.Change`): rows are
        shown as of the watermark, like the snapshot's.
    """

    def __init__(self, stream, versions, published, view, read,
                 in_flight=()):
        self.stream = stream
        self.published = published
        self._versions = dict(versions)
        self._view = view
        self._read = read
        self._in_flight = tuple(in_flight)
        #: table -> None (drop), ('snapshot', rows), ('replace', rows).
        self.plan = {}

    @property
    def versions(self):
        """The ``{table: schema_version}`` the plan leads to."""
        return dict(self._versions)

    def rows(self, table):
        """Rows of ``table`` at the watermark ({key: row}), plan included.

        Copies: the caller may change them and pass them to
        :meth:`replace`.
        """
        action = self.plan.get(table)
        if action is not None:
            return {k: dict(r) for k, r in action[1].items()}
        if table not in self._versions or not self._view.has_table(table):
            return {}
        rows = {k: dict(r) for k, r in self._view.rows(table).items()}
        for change in self._in_flight:
            if change.table != table:
                continue
            if change.after is None:
                rows.pop(change.key, None)
            else:
                rows[change.key] = dict(change.after)
        return rows

    def drop(self, table):
        """Drop ``table`` from cache and state store (delete events)."""
        self.plan[table] = None
        self._versions.pop(table, None)

    def snapshot(self, table):
        """Read ``table`` from the publisher's snapshot."""
        self.plan[table] = ('snapshot', self._read(table))
        self._versions[table] = self.published[table]['version']

    def replace(self, table, rows):
        """Store ``rows`` ({key: row}) as ``table`` at the new version.

        They stand for the table at the watermark, as a snapshot would.
        """
        self.plan[table] = ('replace', dict(rows))
        self._versions[table] = self.published[table]['version']

    def accept(self, table):
        """Declare ``table`` consistent at the new version, rows as is."""
        self.replace(table, self.rows(table))


def migrate(ctx, registered=None):
    """Resolve every inconsistency of ``ctx``; return its plan.

    :raises consumer.exceptions.MigrationError: not consistent after
        :data:`MAX_ROUNDS` rounds, or a step failed.
    """
    registered = list(steps() if registered is None else registered) + \
        [DefaultStep()]
    published = {t: info['version'] for t, info in ctx.published.items()}
    for _round in range(MAX_ROUNDS):
        found = inconsistencies(ctx.versions, published)
        if not found:
            return ctx.plan
        for item in found:
            if item in inconsistencies(ctx.versions, published):
                _resolve(ctx, registered, item, published)
    if inconsistencies(ctx.versions, published):
        raise exceptions.MigrationError(
            'stream %s not consistent after %d rounds: %s' % (
                ctx.stream, MAX_ROUNDS,
                inconsistencies(ctx.versions, published)[:3]))
    return ctx.plan


def _resolve(ctx, registered, item, published):
    kind, table, old, new = item
    for step in registered:
        try:
            if kind == CHANGED:
                step.changed(ctx, table, old, new)
            else:
                getattr(step, kind)(ctx, table, old or new)
        except exceptions.MigrationError:
            raise
        except Exception as exc:
            raise exceptions.MigrationError(
                'step %s failed on %s %s: %s' % (
                    type(step).__name__, kind, table, exc)) from exc
        if item not in inconsistencies(ctx.versions, published):
            return
