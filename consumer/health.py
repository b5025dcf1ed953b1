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

"""Whether a stream is really synced, judged from its status record.

A status record is written every second by a running consumer
(``consumer-sync`` or :class:`consumer.service.Consumer`); its counters
carry ``synced`` (a snapshot is applied and the stream is live),
``applied_seq``, ``heard_seq`` (the highest sequence number the host
announced in a delta or heartbeat) and ``last_heard_at`` (epoch seconds
of the last delta or heartbeat heard). :func:`assess` adds what the
record cannot say by itself: whether the consumer is still alive and
still hears the host. A stream is synced only when

* the record was refreshed within ``2 * heartbeat_interval`` (at least
  3 s): otherwise the consumer is not running;
* a delta or heartbeat was heard within ``2 * heartbeat_interval`` of
  the moment the record was written: otherwise it listens on the wrong
  topic, exchange or stream, or the host or its relay is down. Silence
  is judged as of the record, not as of now, so a consumer that has
  just died is reported as not running rather than as deaf;
* everything up to the last heard sequence number is applied, and the
  reconciler says it is live.
"""

import collections

#: Smallest staleness window, for very short heartbeat intervals: the
#: status record is refreshed once a second.
MIN_WINDOW = 3.0

Health = collections.namedtuple(
    'Health', 'synced reason status_age heard_age')
Health.__doc__ = """Verdict on one stream.

``synced`` (bool); ``reason``: None when synced, else one line saying
what to check; ``status_age`` / ``heard_age``: seconds since the record
was written / since the host was last heard (None: never).
"""


def window(heartbeat_interval):
    """Seconds of silence after which a consumer or host counts as gone."""
    return max(MIN_WINDOW, 2.0 * heartbeat_interval)


def assess(stream, status, now, heartbeat_interval):
    """Judge ``status`` (a :class:`consumer.state.StreamStatus`).

    :param now: current time, epoch seconds.
    :returns: a :class:`Health`.
    """
    limit = window(heartbeat_interval)
    counters = status.counters or {}
    status_age = None
    if status.updated_at is not None:
        status_age = max(0.0, now - status.updated_at.timestamp())
    heard = counters.get('last_heard_at')
    heard_age = None if heard is None else max(0.0, now - heard)
    silence = None
    if heard is not None and status.updated_at is not None:
        silence = max(0.0, status.updated_at.timestamp() - heard)
    if status_age is None or status_age > limit:
        return Health(False, 'stream %s: status record not refreshed for '
                      '%s; check that consumer-sync is running'
                      % (stream, _age(status_age)), status_age, heard_age)
    if silence is None or silence > limit:
        return Health(False, 'stream %s: no heartbeat or delta heard for '
                      '%s; check [consumer] topics, exchanges and streams '
                      'against the host\'s [oslo_publish] topics, '
                      'control_exchange and stream, and that its relay '
                      'runs' % (stream, _age(heard_age)),
                      status_age, heard_age)
    applied = counters.get('applied_seq')
    heard_seq = counters.get('heard_seq')
    if not counters.get('synced'):
        return Health(False, 'stream %s: state %s, not live yet (last '
                      'error: %s); check the consumer log'
                      % (stream, status.state, status.last_error or '-'),
                      status_age, heard_age)
    if heard_seq is not None and (applied is None or applied < heard_seq):
        return Health(False, 'stream %s: applied seq %s behind heard seq '
                      '%s; check the consumer log for gaps and rejections'
                      % (stream, applied, heard_seq), status_age, heard_age)
    return Health(True, None, status_age, heard_age)


def _age(age):
    return 'ever' if age is None else '%.1fs' % age
