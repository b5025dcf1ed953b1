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

"""Counters and gauges of the consumer (prometheus_client).

One ``CollectorRegistry`` per :class:`ConsumerMetrics`, so consumers and
tests never mix figures. See :mod:`oslo_publish.metrics` for why
prometheus_client.
"""

from oslo_publish import metrics as _host_metrics


class ConsumerMetrics(_host_metrics._Metrics):
    """Every figure an operator needs from a consumer, by stream."""

    def __init__(self, registry=None):
        super().__init__(registry)
        c, g = self._counter, self._gauge
        self.messages_received = c(
            'consumer_messages_received', 'Messages received')
        self.deltas_applied = c(
            'consumer_deltas_applied', 'Row deltas applied to the cache')
        self.duplicates_dropped = c(
            'consumer_duplicates_dropped',
            'Transactions dropped because seq <= applied position')
        self.requeued = c(
            'consumer_messages_requeued',
            'Delta messages returned to the broker unacknowledged because '
            'their effect was not persisted within ack_timeout')
        self.rejected = c(
            'consumer_rejected', 'Messages rejected, by reason',
            ('stream', 'reason'))
        self.resyncs = c(
            'consumer_resyncs', 'Resyncs started, by cause',
            ('stream', 'cause'))
        self.invalidations = c(
            'consumer_table_invalidations',
            'Table invalidations applied (each re-reads the table), by '
            'table and cause', ('stream', 'table', 'cause'))
        self.drift = c(
            'consumer_drift_rows',
            'Rows the periodic resync found different from the cache',
            ('stream', 'table'))
        self.handler_failures = c(
            'consumer_handler_failures', 'Change handler calls that raised',
            ('handler',))
        self.handler_dropped = c(
            'consumer_handler_dropped',
            'Events dropped because a handler queue was full', ('handler',))
        self.notifications_handled = c(
            'consumer_notifications_handled',
            'Native notifications mapped to cache updates', ('handler',))
        self.applied_seq = g(
            'consumer_applied_seq', 'Applied sequence number')
        self.lag = g(
            'consumer_lag_seconds',
            'Commit-to-apply delay of the last applied transaction')
        self.synced = g(
            'consumer_synced', '1 when snapshot applied and stream live')
