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

"""Per-stream reconciliation: order, dedup, gaps, snapshots, resyncs.

One module per concept: :mod:`.core` (the :class:`Reconciler`, the
entry point, composed of the parts below), :mod:`.common` (states,
limits, :class:`StateUnavailable`). Parts of the Reconciler:
:mod:`.deltas` (message intake, ordering, dedup, epochs), :mod:`.apply`
(applying contiguous runs), :mod:`.watch` (heartbeats, timers, resync
requests), :mod:`.settle` (acknowledgement against the persisted
position), :mod:`.resume` (start from the state store), :mod:`.resync`
(snapshot read, drift, retries), :mod:`.install` (reading and swapping
a snapshot in), :mod:`.migrate` (schema migrations). Collaborators with
their own state: :mod:`.buffer` (reorder / snapshot buffer),
:mod:`.gaps` (gap, heartbeat and inactivity clocks), :mod:`.epochs`
(stream identity), :mod:`.timers` (resync backoff and rate limit),
:mod:`.turns` (deltas waiting for their turn), :mod:`.catchup` (a
resume's hold on the collector), :mod:`.drift` (periodic comparison).
Persisting is :mod:`consumer.persister`.
"""

from consumer.reconciler.core import BATCH_LIMIT
from consumer.reconciler.core import CAUSES
from consumer.reconciler.core import FLUSH_TIMEOUT
from consumer.reconciler.core import INITIAL
from consumer.reconciler.core import LIVE
from consumer.reconciler.core import MAX_TICK
from consumer.reconciler.core import Reconciler
from consumer.reconciler.core import RESYNCING
from consumer.reconciler.core import SNAPSHOT_BUFFER
from consumer.reconciler.core import SNAPSHOTTING
from consumer.reconciler.core import StateUnavailable
from consumer.reconciler.core import STOPPED
from consumer.reconciler.drift import row_hash

__all__ = ['BATCH_LIMIT', 'CAUSES', 'FLUSH_TIMEOUT', 'INITIAL', 'LIVE',
           'MAX_TICK', 'Reconciler', 'RESYNCING', 'SNAPSHOT_BUFFER',
           'SNAPSHOTTING', 'StateUnavailable', 'STOPPED', 'row_hash']
