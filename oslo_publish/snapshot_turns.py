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

"""Numbered snapshot pages: which key each page starts after.

A client of snapshot API 1.1 asks for pages by number, several at once
(:data:`oslo_publish.wire.PAGE_WINDOW`). The host still reads a table's
pages one after the other by key: page ``i + 1`` starts after the last
key of page ``i``, known once page ``i`` was read. :class:`PageTurns`
keeps those keys for one snapshot and makes the request for page ``i +
1`` wait until page ``i`` was read, so every row is served once, in key
order, whatever order the requests arrive in.
"""

import threading

#: Keys of pages this far behind the latest one read are forgotten.
KEEP_BEHIND = 8


class PageTurns(object):
    """The page starts of one snapshot's tables (thread-safe).

    :param tables: the snapshot's table names.
    :param window: pages a request may be ahead of the pages read.
    """

    def __init__(self, tables, window):
        self._window = window
        self._cond = threading.Condition()
        #: {table: {index: encoded key the page starts after}}.
        self._starts = {table: {0: None} for table in tables}
        #: {table: index of its last page}.
        self._last = {}
        self._closed = False

    def start_of(self, table, index, timeout):
        """The key page ``index`` of ``table`` starts after.

        Waits (up to ``timeout`` seconds) until the page before it was
        read. Returns ``(True, key)`` (``key`` None for page 0),
        ``(False, None)`` for a page after the table's last one, or None
        when the snapshot closed, the wait timed out, or ``index`` is
        more than ``window`` pages ahead of the pages read or was
        served long ago.
        """
        with self._cond:
            starts = self._starts[table]
            if index < min(starts) or index > max(starts) + self._window:
                return None

            def ready():
                return self._closed or index in starts or \
                    self._last.get(table, index) < index
            self._cond.wait_for(ready, timeout)
            if index in starts:
                return True, starts[index]
            if self._last.get(table, index) < index:
                return False, None
            return None  # closed, or timed out

    def advance(self, table, index, following):
        """Page ``index`` of ``table`` was read.

        ``following``: the encoded key of its last row, or None when it
        was the table's last page.
        """
        with self._cond:
            starts = self._starts[table]
            if following is None:
                self._last[table] = index
            else:
                starts[index + 1] = following
            for old in [i for i in starts if i < index - KEEP_BEHIND]:
                del starts[old]
            self._cond.notify_all()

    def close(self):
        """Wake every waiting request (they get None)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
