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

LogTransaction = collections.namedtuple(
    'LogTransaction', 'position xid committed_at changes tables')
LogTransaction.__doc__ = """One committed transaction decoded from the log.

``position``: a text that sorts (as text) in commit order within one
stream and identifies the transaction in the log (PostgreSQL: the commit
LSN as 16 hex digits; MariaDB: the GTID sequence number zero-padded, or
binlog file and offset); ``xid``: the database's transaction id (int) or
None; ``committed_at``: an aware UTC :class:`datetime.datetime`;
``changes``: list of wire change dicts (insert / update / delete, or an
invalidation); ``tables``: ``{table: {"pk": [...], "version": ...}}`` for
every table ``changes`` mentions, as :func:`oslo_publish.wire.delta_message`
expects.
"""


class LogReader(object, metaclass=abc.ABCMeta):
    """Reads committed transactions of allow-listed tables from a log."""

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
