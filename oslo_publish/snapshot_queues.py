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

"""Removal of the snapshot server's per-process queue from the broker.

oslo.messaging's RPC server declares ``<topic>.<server>`` with the
transport's ``amqp_durable_queues`` / ``amqp_auto_delete`` settings;
with durable queues (what a consumer's notification pool needs) it
outlives the process, and every host start added one. The snapshot
server's name is unique per process, so its queue has no purpose once
the server stopped. :func:`private_queues` names the queues the
server's listener declared except the shared ``<topic>`` queue (one per
stream, other host processes serve it): ``<topic>.<server>`` and the
fanout queue ``<topic>_fanout_<random>`` (which would otherwise linger
for ``rabbit_transient_queues_ttl``). :func:`delete_queues` deletes them
after the server stopped, with a short-lived connection cloned from the
transport's own (same hosts, credentials and TLS settings).

A process that is killed cannot clean up, and oslo.messaging declares
``<topic>.<server>`` without an expiry (a durable queue then stays
forever). A RabbitMQ policy gives these queues one: with ``expires``
set for :data:`SERVER_QUEUE_PATTERN` (``doc/source/operations.rst``,
"Queues of killed hosts") the broker deletes a killed host's queue once
it has had no consumer for that long; a running server always has one.

Other drivers (``fake://``, Kafka has no RPC) have nothing to delete.
"""

from oslo_log import log

LOG = log.getLogger(__name__)

#: The names of the per-process queues ``<topic>.<host>.<pid>.<random>``
#: (:func:`oslo_publish.snapshot.server_name`), as a RabbitMQ policy
#: pattern. The shared ``<topic>`` queue of a stream does not match
#: (unless the stream's own name ends in ``.<digits>.<6 hex digits>``).
SERVER_QUEUE_PATTERN = r'^oslo_publish_snapshot\..+\.[0-9]+\.[0-9a-f]{6}$'


def _kombu_connection(transport):
    driver = getattr(transport, '_driver', None)
    get = getattr(driver, '_get_connection', None)
    if get is None or type(driver).__name__ != 'RabbitDriver':
        return None
    with get() as context:
        return context.connection.connection.clone()


def private_queues(rpc_server, shared):
    """Queues a started RPC server declared, but ``shared``.

    Read from the rabbit driver's listener; empty for other drivers.
    """
    listener = getattr(rpc_server, 'listener', None)
    poll = getattr(listener, '_poll_style_listener', None)
    conn = getattr(getattr(poll, 'conn', None), 'connection', None)
    consumers = getattr(conn, '_consumers', None) or {}
    names = []
    for consumer in list(consumers):
        name = getattr(consumer, 'queue_name', None)
        if isinstance(name, str) and name != shared:
            names.append(name)
    return names


def delete_queues(transport, names):
    """Delete queues ``names`` on ``transport``'s broker (rabbit only).

    Best effort: a failure is logged (the queues are then left for the
    operator, named in the warning) and never raised. Returns the number
    of queues deleted.
    """
    if not names:
        return 0
    deleted = 0
    try:
        conn = _kombu_connection(transport)
        if conn is None:
            return 0
        with conn:
            for name in names:
                conn.default_channel.queue_delete(queue=name)
                deleted += 1
        LOG.debug('Deleted snapshot server queues %s', ', '.join(names))
    except Exception as exc:  # noqa: broad - stopping must not fail
        LOG.warning('Could not delete the snapshot server queues %(q)s: '
                    '%(err)s', {'q': ', '.join(names[deleted:]),
                                'err': exc})
    return deleted
