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

"""Counters and gauges of the host middleware (prometheus_client).

Each :class:`HostMetrics` owns a ``CollectorRegistry``, so two installs in
one process (or two tests) never mix their figures. ``value()`` reads one
sample, for status tools and tests. prometheus_client is chosen over
oslo.metrics because it needs no separate daemon and every monitoring
stack scrapes its format (see doc/source/operations.rst).
"""

import prometheus_client as prom


class _Metrics(object):

    def __init__(self, registry=None):
        self.registry = registry or prom.CollectorRegistry()

    def _counter(self, name, doc, labels=('stream',)):
        return prom.Counter(name, doc, labels, registry=self.registry)

    def _gauge(self, name, doc, labels=('stream',)):
        return prom.Gauge(name, doc, labels, registry=self.registry)

    def value(self, name, **labels):
        """Current value of sample ``name`` with ``labels`` (0 if none)."""
        got = self.registry.get_sample_value(name, labels or None)
        return got if got is not None else 0

    def exposition(self):
        """The metrics in Prometheus text format."""
        return prom.generate_latest(self.registry).decode('utf-8')


class HostMetrics(_Metrics):
    """Every figure an operator needs from the host half, by stream."""

    def __init__(self, registry=None):
        super().__init__(registry)
        c, g = self._counter, self._gauge
        self.transactions_captured = c(
            'oslo_publish_transactions_captured',
            'Committed transactions that changed allow-listed tables')
        self.deltas_captured = c(
            'oslo_publish_deltas_captured', 'Row deltas captured')
        self.capture_invalidations = c(
            'oslo_publish_capture_invalidations',
            'Table invalidations published where a change could not be '
            'captured row by row', ('stream', 'table', 'cause'))
        self.deltas_published = c(
            'oslo_publish_deltas_published',
            'Row deltas published and confirmed by the broker')
        self.messages_published = c(
            'oslo_publish_messages_published',
            'Messages published and confirmed by the broker')
        self.broker_retries = c(
            'oslo_publish_broker_retries',
            'Publish attempts that failed and were retried')
        self.heartbeats = c(
            'oslo_publish_heartbeats', 'Heartbeats published')
        self.direct_dropped = c(
            'oslo_publish_direct_dropped',
            'Transactions lost by direct delivery (queue full or stop)')
        self.snapshots_served = c(
            'oslo_publish_snapshots_served', 'Snapshots opened')
        self.snapshots_refused = c(
            'oslo_publish_snapshots_refused',
            'Snapshot requests refused', ('stream', 'reason'))
        self.snapshots_orphaned = c(
            'oslo_publish_snapshots_orphaned',
            'Snapshots closed because no page was asked for within '
            'snapshot_first_page_timeout')
        self.relay_backlog = g(
            'oslo_publish_relay_backlog',
            'Committed outbox entries not yet published')
        self.relay_lag = g(
            'oslo_publish_relay_lag_seconds',
            'Age of the oldest unpublished committed entry')
        self.last_seq = g(
            'oslo_publish_last_seq', 'Last sequence number published')
        self.log_retained = g(
            'oslo_publish_log_retained_bytes',
            'Bytes of database log (PostgreSQL WAL) the stream\'s '
            'replication slot keeps for capture = logical')
