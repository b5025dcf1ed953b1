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

"""The short way of a notification to RabbitMQ, on oslo.messaging's pool.

:meth:`Publisher.publish <oslo_publish.publisher.Publisher.publish>`
costs about 0.6 ms of the relay's CPU per message through
``transport._send_notification``, most of it oslo.messaging's own layers
around one ``basic.publish`` and its confirm (log calls, the reconnection
wrapper and its retry closures, an exchange object per send, the
envelope encoded twice). :class:`RabbitSender` sends the same bytes
(the ``messagingv2`` envelope, the same exchange, routing key and
properties) on a connection of the same driver's pool, under the
connection's own lock, and waits for the broker's confirm as the driver
does (its channels have ``confirm_publish``).

It only takes the short way on a connection where the driver itself
already declared the exchange and the default ``<topic>.info`` queue
(:meth:`send` returns False otherwise, and after any failure): the
caller then sends through the driver, which declares, reconnects and
retries as before. A failure after the broker took the message makes
it go twice, which the wire allows (at least once; consumers drop
duplicates by sequence number).
"""

from oslo_log import log
from oslo_serialization import jsonutils

from oslo_publish import message_ids

LOG = log.getLogger(__name__)

#: The ``messagingv2`` envelope (oslo.messaging's ``serialize_msg``).
_VERSION_KEY = 'oslo.version'
_MESSAGE_KEY = 'oslo.message'
_ENVELOPE_VERSION = '2.0'
#: Key of the message id oslo.messaging adds for duplicate detection.
_UNIQUE_ID = '_unique_id'


def for_transport(transport):
    """A :class:`RabbitSender` for ``transport``, or None.

    None unless the transport's driver is oslo.messaging's RabbitMQ
    driver with the pieces the short way uses (another version of it,
    another driver, ``fake://``: everything goes through the driver).
    """
    driver = getattr(transport, '_driver', None)
    try:
        from oslo_messaging._drivers import common as rpc_common
        from oslo_messaging._drivers import impl_rabbit
    except ImportError:  # noqa: another oslo.messaging layout
        return None
    if not isinstance(driver, impl_rabbit.RabbitDriver):
        return None
    needed = ('_get_connection', '_default_exchange')
    if not all(hasattr(driver, name) for name in needed):
        return None
    return RabbitSender(driver, rpc_common.PURPOSE_SEND)


class RabbitSender(object):
    """Sends envelopes on the driver's pooled sending connections.

    :param driver: oslo.messaging's ``RabbitDriver``.
    :param purpose: ``PURPOSE_SEND``.
    """

    def __init__(self, driver, purpose):
        self._driver = driver
        self._purpose = purpose
        self._exchange = driver._default_exchange
        #: Sends that took the short way, and those left to the driver.
        self.sent = 0
        self.declined = 0

    @staticmethod
    def body(message):
        """The AMQP body oslo.messaging sends for ``message`` (text)."""
        message = dict(message)
        message[_UNIQUE_ID] = message_ids.new_uuid().hex
        return jsonutils.dumps({_VERSION_KEY: _ENVELOPE_VERSION,
                                _MESSAGE_KEY: jsonutils.dumps(message)})

    def send(self, routing_key, message, retry=None):
        """Publish ``message`` and wait for the confirm.

        :returns: True when the broker confirmed it; False when the
            driver must send it (nothing declared yet on the connection
            taken, or any failure, which is logged at debug level).
        """
        body = self.body(message)
        try:
            with self._driver._get_connection(self._purpose,
                                              retry) as context:
                if self._publish(context.connection, routing_key, body):
                    self.sent += 1
                    return True
        except Exception as exc:  # noqa: the driver tries it again
            LOG.debug('Short publish to %(key)s failed, the driver sends '
                      'it: %(exc)s', {'key': routing_key, 'exc': exc})
        self.declined += 1
        return False

    def _publish(self, conn, routing_key, body):
        exchange = self._exchange
        with conn._connection_lock:
            producer = conn._producer
            if (producer is None or conn.channel is None or
                    exchange not in conn._declared_exchanges or
                    (exchange, routing_key) not in conn._declared_queues):
                return False
            producer.publish(body, exchange=exchange,
                             routing_key=routing_key,
                             content_type='application/json',
                             content_encoding='utf-8',
                             compression=conn.kombu_compression)
        return True
