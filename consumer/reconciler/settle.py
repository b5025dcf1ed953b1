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

"""Durability: when a message may be acknowledged to the broker.

The part of :class:`~consumer.reconciler.core.Reconciler` between the
persister (:mod:`consumer.persister`, which writes applied runs to the
state store on its own thread) and the listener: :meth:`Settle.settle`
holds a message's acknowledgement until its effect is persisted or it
was deliberately discarded; a failed write is counted and retried.
"""

import time

from oslo_log import log

LOG = log.getLogger(__name__)


class Settle(object):
    """Acknowledgement of messages against the persisted position.

    Reads ``_persister``, ``_applied`` and ``_buffer`` (under ``_lock``);
    writes ``last_error`` and ``counters`` when a write fails.
    """

    @property
    def durable(self):
        """Highest seq whose effect is in the state store."""
        return self._persister.durable

    def settle(self, message, timeout):
        """Wait until ``message`` may be acknowledged to the broker.

        True once its effect is persisted (``seq <= durable``) or it was
        deliberately discarded (neither applied nor buffered: a
        duplicate dropped from an overflowing buffer or forged); False
        after ``timeout`` seconds or when stopping (requeue it).
        """
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if self._persister.wait_durable(message.last_seq,
                                            max(0.0, min(left, 0.25))):
                return True
            with self._lock:
                if self._discarded(message):
                    return True
            if left <= 0 or self._stopping.is_set():
                return False

    def _discarded(self, message):
        """Neither applied nor waiting in the buffer; caller: _lock."""
        if self._applied is not None and \
                self._applied >= message.first_seq:
            return False
        return not any(tx.seq in self._buffer
                       for tx in message.transactions)

    def _persist_failed(self, exc):
        """The persister's write failed (called without _lock)."""
        self.last_error = 'state store: %s' % type(exc).__name__
        self.counters['state_errors'] += 1
        LOG.warning('Stream %s: state store write failed (%s); retrying',
                    self.stream, type(exc).__name__)
