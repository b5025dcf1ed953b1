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


"""The watermark protocol of the snapshot server (DESIGN.md).

With log-based capture (``capture = logical``) the outbox entries are
staged after their transactions committed, so S cannot see them: the
relay's ``snapshot_cut`` (set by the code that starts the log reader,
:meth:`oslo_publish.logcapture.base.LogReader.snapshot_cut`) waits until
everything S sees is staged and says which staged entries S sees.
"""

import sqlalchemy as sa

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
        ids = self._visible_ids(snapshot_conn)
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

    def _visible_ids(self, snapshot_conn):
        """Ids of the pending entries whose transactions S sees."""
        relay = self._relay
        cut = getattr(relay, 'snapshot_cut', None)
        if cut is None:
            return [row[0] for row in
                    snapshot_conn.execute(relay.visible_ids)]
        visible = cut(snapshot_conn)
        pending = (sa.select(_OUTBOX.c.id, _OUTBOX.c.xid, _OUTBOX.c.txid,
                             _OUTBOX.c.log_position.label('position'))
                   .where(_OUTBOX.c.stream == relay.stream)
                   .where(_OUTBOX.c.seq.is_(None))
                   .order_by(_OUTBOX.c.id))
        return [row.id for row in self._held.conn.execute(pending)
                if visible(row)]
