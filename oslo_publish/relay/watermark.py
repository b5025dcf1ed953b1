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


"""The watermark protocol of the snapshot server (DESIGN.md)."""

from oslo_publish import outbox

_OUTBOX = outbox.outbox


class Watermark(object):
    """Handed out by :meth:`Relay.lock_for_snapshot` (lock held).

    :ivar value: the watermark N once :meth:`publish_visible` returned.
    """

    def __init__(self, relay, held):
        self._relay = relay
        self._held = held
        self.value = None

    @property
    def last_seq(self):
        return self._held.last_seq

    @property
    def epoch(self):
        """The stream's epoch the watermark belongs to."""
        return self._held.epoch

    def publish_visible(self, snapshot_conn):
        """Publish what must precede ``snapshot_conn``'s S in the stream.

        First the entries numbered but not marked published (with their
        numbers), then the pending entries visible to S, numbered now.

        :returns: the watermark N (the last seq published).
        :raises DeliveryError: when the broker did not confirm; what was
            numbered stays numbered, for the next relay cycle.
        """
        relay = self._relay
        held = self._held
        ids = [row[0] for row in snapshot_conn.execute(relay.visible_ids)]
        while True:
            rows = relay.assigned_rows(held)
            if not rows:
                break
            relay.publish_all(held, rows)
        size = relay.batch_size
        for start in range(0, len(ids), size):
            chunk = ids[start:start + size]
            rows = held.conn.execute(
                relay.pending_query().where(_OUTBOX.c.id.in_(chunk))).all()
            relay.publish_all(held, relay.assign(held, rows))
        self.value = held.last_seq
        return self.value
