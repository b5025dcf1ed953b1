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

"""The interface between a log reader and the relay.

A *reader* turns one database's change log into :class:`LogTransaction`
objects, in commit order, each holding the wire changes (see
:mod:`oslo_publish.wire`, the same dictionaries session capture puts in
an outbox payload) of the allow-listed tables only, with excluded
columns already removed and every value already in the column's codec
encoding (:mod:`oslo_publish.codec`), so the bytes on the wire do not
depend on the capture backend.

A reader never decides what is durable: the staging step writes the
transactions it gets to the outbox together with their log
:attr:`LogTransaction.position`, commits, and only then calls
:meth:`LogReader.confirm` with the last staged position, which lets the
database discard the log before it (slot ``confirmed_flush_lsn``,
binlog purge horizon). After a crash the reader restarts from the
position the database kept and the staging step drops every transaction
whose position is not after the last one staged, so nothing is skipped,
doubled or renumbered.
"""

import abc
import collections
import time

from oslo_publish import exceptions

#: Seconds between two visibility checks of :func:`wait_until`.
VISIBILITY_PAUSE = 0.0005


def wait_until(check, timeout, failure):
    """Call ``check()`` until it returns True (the visibility waits).

    Checks first, then every :data:`VISIBILITY_PAUSE` seconds.

    :param failure: called for the exception raised once ``timeout``
        seconds passed with ``check()`` still False.
    """
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise failure()
        time.sleep(VISIBILITY_PAUSE)


LogTransaction = collections.namedtuple(
    'LogTransaction', 'position xid committed_at changes tables')
LogTransaction.__doc__ = """One committed transaction decoded from the log.

``position``: a text (at most 255 characters) that sorts (as text) in
commit order within one stream and identifies the transaction in the
log (PostgreSQL: the commit's end LSN as 16 hex digits; MariaDB: the
GTID sequence number zero-padded, or binlog file and offset);
``xid``: the database's transaction id (int) or None;
``committed_at``: an aware UTC :class:`datetime.datetime`;
``changes``: list of wire change dicts (insert / update / delete, or
an invalidation), empty for a transaction that only moves the staged
position; ``tables``: ``{table: {"pk": [...], "version": ...}}`` for
every table ``changes`` mentions, as
:func:`oslo_publish.wire.delta_message` expects.
"""


class LogLost(exceptions.PublishError):
    """The log the reader needs is gone: a new epoch must start.

    E.g. a PostgreSQL slot invalidated past ``max_slot_wal_keep_size``.
    """


class LogReader(object, metaclass=abc.ABCMeta):
    """Reads committed transactions of allow-listed tables from a log.

    Made as ``Reader(conf, engine, published, stream)`` (``published``:
    the ``{name: PublishedTable}`` of
    :func:`oslo_publish.schema.resolve_tables`); making one connects to
    nothing. The class methods are used by ``oslo-publish-manage``.
    """

    def __init__(self, conf, engine, published, stream):
        self.conf = conf
        self.engine = engine
        self.tables = published
        self.stream = stream

    @classmethod
    def check(cls, engine):
        """Check the database's settings for log capture.

        :raises ConfigError: naming the setting that is missing (e.g.
            ``wal_level``).
        """

    @classmethod
    def setup(cls, conf, engine, published, stream):
        """Create what the reader needs (slot, publication); idempotent."""
        raise NotImplementedError()

    @classmethod
    def teardown(cls, conf, engine, published, stream):
        """Drop what :meth:`setup` created; idempotent."""
        raise NotImplementedError()

    @classmethod
    def reset_log(cls, conf, engine, published, stream):
        """Recreate a lost log (after :class:`LogLost`).

        A new epoch follows. The default is :meth:`teardown`, then
        :meth:`setup`.
        """
        cls.teardown(conf, engine, published, stream)
        cls.setup(conf, engine, published, stream)

    def wait_visible(self, conn, transactions):
        """Return once ``transactions`` are visible to new snapshots.

        Called by the staging step (``conn``: its transaction) before it
        writes them. A database that logs a commit before the commit is
        visible (PostgreSQL; InnoDB with the binlog) must wait here, or
        an entry could be numbered before a snapshot that cannot see
        it. The default does nothing.
        """

    def snapshot_cut(self, snapshot_conn):
        """The watermark's cut for the snapshot transaction S.

        Called by the snapshot server with the stream lock held and S
        (``snapshot_conn``, a SQLAlchemy Connection) open, its snapshot
        taken: PostgreSQL ``REPEATABLE READ`` after a first statement,
        MySQL/MariaDB ``START TRANSACTION WITH CONSISTENT SNAPSHOT``
        (see ``SnapshotServer._begin``). It may run in another process
        than the stager and on another reader object than the one
        streaming: it waits for the *staged* position in
        ``oslo_publish_log_positions``
        (:func:`~oslo_publish.logcapture.staging.wait_staged`), which a
        reader moves past a point with no published change by returning
        a :class:`LogTransaction` with no changes at that position.
        Returns once every transaction visible to S is staged, with a
        predicate ``visible(entry)`` over staged, unnumbered outbox
        entries (attributes ``id``, ``xid``, ``txid`` and ``position``,
        the :attr:`LogTransaction.position`): True for the entries whose
        transaction S sees. Those are numbered first (up to the
        watermark N), every other entry after N.
        """
        raise NotImplementedError()

    @abc.abstractmethod
    def start(self, after_position):
        """Connect and position the log after ``after_position``.

        :param after_position: the last position staged (None: the
            reader's own durable start, e.g. the slot's
            ``confirmed_flush_lsn``).
        """

    @abc.abstractmethod
    def read(self, timeout):
        """Return the next decoded transactions, waiting up to ``timeout``.

        :returns: a list of :class:`LogTransaction` (possibly empty), in
            commit order; transactions that touched no allow-listed table
            may be left out.
        """

    @abc.abstractmethod
    def confirm(self, position):
        """Everything up to ``position`` is staged durably: release it."""

    @abc.abstractmethod
    def lag(self):
        """Bytes (or events) of log retained for this reader, or None."""

    @abc.abstractmethod
    def close(self):
        """Disconnect; safe to call twice."""
