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


"""Transaction frames: the events of each (nested) transaction.

An event is a tuple ``(op, table, key, before, after, changed, exact)``;
a table invalidation is ``(wire.INVALIDATE, table, None, cause, None,
None, True)``. Every savepoint collects its own events; a released
savepoint hands them to its parent, a rolled-back one drops them.
"""

from oslo_publish import wire

KEY = 'oslo_publish.capture'


class Frame(object):
    """Events of one (nested) transaction."""

    __slots__ = ('tx', 'events', 'released')

    def __init__(self, tx):
        self.tx = tx
        self.events = []
        self.released = False


class TxState(object):
    """Capture state of one session's outermost transaction."""

    __slots__ = ('frames', 'pre', 'staged', 'sealed', 'committed',
                 'returning')

    def __init__(self):
        self.frames = [Frame(None)]
        self.pre = None
        self.returning = None
        self.staged = False
        self.sealed = False
        self.committed = False

    @property
    def top(self):
        return self.frames[-1].events


def state(session):
    """The capture state of ``session``'s transaction (created if none)."""
    st = session.info.get(KEY)
    if st is None:
        st = session.info[KEY] = TxState()
    return st


def invalidation_event(table, cause):
    """The event invalidating ``table`` in this transaction's delta."""
    return (wire.INVALIDATE, table, None, cause, None, None, True)
