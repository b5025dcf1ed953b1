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

"""Stream epochs, consumer side: which epoch a message belongs to.

A restored or rebuilt host database is a new epoch; its sequence numbers
are new however low they are. See :mod:`oslo_publish.wire`.
"""

#: The message counts in the current epoch (or carries none: format 1.0).
SAME = 'same'
#: The first epoch seen: taken as the current one, no resync.
ADOPT = 'adopt'
#: An epoch the stream has left: the message is stale.
STALE = 'stale'
#: Another epoch: the stream must resync.
CHANGED = 'changed'


class EpochTracker(object):
    """The epoch a stream's positions count in, and the one coming.

    ``current``: the epoch of the applied position (None: unknown).
    ``coming``: the epoch the next installed snapshot counts in (seen
    on a message before the initial snapshot, or after a change).
    Not thread-safe: the reconciler calls it under its lock.
    """

    def __init__(self, current=None):
        self.current = current
        self.coming = None
        self._retired = set()

    def classify(self, epoch, synced_once):
        """What a message of ``epoch`` means; updates the tracker.

        :param synced_once: True once a position exists (after the
            initial snapshot or a resume).
        :returns: :data:`SAME`, :data:`ADOPT`, :data:`STALE` or
            :data:`CHANGED`.
        """
        if epoch is None:
            return SAME
        expected = self.coming or self.current
        if expected is None:
            if synced_once:
                self.current = epoch
            else:
                self.coming = epoch
            return ADOPT
        if epoch == expected:
            return SAME
        if epoch in self._retired or (
                self.coming is not None and epoch == self.current):
            return STALE
        self.coming = epoch
        return CHANGED

    def installed(self, epoch):
        """A snapshot counting in ``epoch`` was installed."""
        if self.current is not None and self.current != epoch:
            self._retired.add(self.current)
        self._retired.discard(epoch)
        self.current = epoch
        self.coming = None

    def for_install(self, snapshot_epoch):
        """The epoch a snapshot counts in (the host's word first)."""
        return snapshot_epoch or self.coming or self.current
