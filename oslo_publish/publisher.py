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

"""Publish wire messages on the notification bus, confirmed or not at all.

Delivery guarantee: :meth:`Publisher.publish` returns only after the
transport accepted the message on every configured topic; with the
RabbitMQ driver that means the broker confirmed it (the driver opens its
channels with ``confirm_publish=True``, so a publish that the broker
does not acknowledge raises). Anything else raises
:class:`~oslo_publish.exceptions.DeliveryError`; the caller (the relay)
keeps the outbox entries and tries again later. A message may therefore
reach the bus more than once (at least once, never at most once): a
consumer deduplicates by sequence number.

oslo.messaging's ``Notifier`` logs and swallows send errors, so its
return says nothing about delivery. This module sends the same message
the ``messagingv2`` notification driver sends (same envelope, same
``<topic>.<priority>`` routing key, priority ``info``), but through the
transport directly, so errors reach us. Each send is bounded by a small
retry count: a dead broker costs an attempt about a second, it never
blocks the caller indefinitely. With the RabbitMQ driver a message
usually takes a shorter way on the same driver's pooled connections
(:mod:`oslo_publish.rabbit_send`: the same bytes, the same confirm);
whatever that way cannot send goes through the driver as described.

The RabbitMQ driver also declares a queue named ``<topic>.info`` on the
first publish (so messages are kept until someone binds). Consumers listen
with their own pools and never read it: operators should give it a TTL
or max-length policy (see ``doc/source/operations.rst``).
"""

import oslo_messaging
from oslo_log import log
from oslo_utils import timeutils

from oslo_publish import exceptions
from oslo_publish import message_ids
from oslo_publish import rabbit_send
from oslo_publish import wire

LOG = log.getLogger(__name__)

PRIORITY = 'info'

#: Reconnection attempts oslo.messaging makes inside one publish before it
#: gives up (the relay then backs off and tries again).
SEND_RETRY = 1


class Publisher(object):
    """Sends notifications of one stream and reports whether they landed.

    :param conf: the ConfigOpts (``[oslo_publish] topics``).
    :param transport: an oslo.messaging notification transport.
    :param stream: the stream name (``publisher_id`` is derived from it).
    :param metrics: optional :class:`~oslo_publish.metrics.HostMetrics`.
    """

    def __init__(self, conf, transport, stream, metrics=None, retry=None):
        self._transport = transport
        self._topics = list(conf.oslo_publish.topics)
        self._stream = stream
        self._metrics = metrics
        self._retry = SEND_RETRY if retry is None else retry
        self.publisher_id = wire.publisher_id(stream)
        self._targets = [
            (topic, oslo_messaging.Target(topic='%s.%s' % (topic, PRIORITY)))
            for topic in self._topics]
        #: The short way to RabbitMQ (:mod:`oslo_publish.rabbit_send`),
        #: or None (another driver): then always through the driver.
        self.sender = rabbit_send.for_transport(transport)

    @property
    def stream(self):
        return self._stream

    def publish(self, event_type, payload):
        """Send ``payload`` as event ``event_type`` to every topic.

        :raises DeliveryError: when any topic's send was not confirmed.
        """
        for topic, target in self._targets:
            message = {
                'message_id': str(message_ids.new_uuid()),
                'publisher_id': self.publisher_id,
                'event_type': event_type,
                'priority': PRIORITY.upper(),
                'payload': payload,
                'timestamp': str(timeutils.utcnow()),
            }
            if self.sender is not None and self.sender.send(
                    target.topic, message, self._retry):
                continue
            try:
                self._transport._send_notification(
                    target, {}, message, version=2.0, retry=self._retry)
            except Exception as exc:  # noqa: broad - any driver failure
                LOG.warning('Publishing %(event)s of stream %(stream)s to '
                            'topic %(topic)s failed: %(exc)s',
                            {'event': event_type, 'stream': self._stream,
                             'topic': topic, 'exc': exc})
                raise exceptions.DeliveryError(
                    'broker did not confirm %s on topic %s: %s'
                    % (event_type, topic, exc)) from exc
