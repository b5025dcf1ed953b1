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

"""A killed host's snapshot queue expires under the documented policy.

A private RabbitMQ node (:mod:`tests.rabbit_cluster`, one node), the
policy of ``doc/source/operations.rst`` "Queues of killed hosts" (with a
short expiry), a real host process with durable queues: SIGKILLed, it
cannot delete its ``<topic>.<server>`` queue, and the broker must.
"""

import os
import re
import signal
import types

from oslo_publish import snapshot_queues
from oslo_publish import wire
from tests import base
from tests.functional import test_consumer_e2e as e2e
from tests import rabbit_cluster

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), 'doc', 'source', 'operations.rst')


def documented_policy():
    """(pattern, definition) of the ``set_policy`` command in the docs."""
    with open(DOC) as f:
        text = f.read()
    found = re.search(r"rabbitmqctl set_policy --apply-to queues "
                      r"oslo-publish-snapshot-servers \\\n\s+'([^']+)' "
                      r"'([^']+)'", text)
    if found is None:
        raise AssertionError('no snapshot queue policy in %s' % DOC)
    return found.group(1), found.group(2)


class _OneNode(rabbit_cluster.RabbitClusterFixture):
    SIZE = 1


class TestKilledHostQueueExpires(base.TestCase):

    def test_documented_pattern_is_the_servers(self):
        pattern, definition = documented_policy()
        self.assertEqual(snapshot_queues.SERVER_QUEUE_PATTERN, pattern)
        self.assertIn('"expires"', definition)

    def test_sigkilled_host_queue_is_deleted_by_the_policy(self):
        node = self.useFixture(_OneNode()).nodes[0]
        pattern, _definition = documented_policy()
        # The documented policy, with 2 s instead of 10 minutes.
        node.ctl('set_policy', '--apply-to', 'queues',
                 'oslo-publish-snapshot-servers', pattern,
                 '{"expires": 2000}')
        db = self.useFixture(base.DatabaseFixture('sqlite'))
        stream = base.unique_name('st')
        transport = types.SimpleNamespace(
            url='rabbit://guest:guest@127.0.0.1:%d/' % node.port,
            exchange=base.unique_name('opx'))
        host = self.useFixture(e2e.HostProcess(
            db.url, transport, stream, base.unique_name('opt')))
        topic = wire.snapshot_topic(stream)

        def queues():
            out = node.ctl('list_queues', '--no-table-headers', 'name',
                           'durable')
            return dict(line.split() for line in out.splitlines()
                        if line.startswith(topic))

        found = base.wait_for(
            lambda: [q for q in queues() if q.startswith(topic + '.')],
            timeout=60, message='the host declared no server queue')
        self.assertEqual(1, len(found), found)
        own = found[0]
        self.assertEqual('true', queues()[own])
        self.assertTrue(re.match(pattern, own), own)
        host.proc.send_signal(signal.SIGKILL)
        host.proc.wait(30)
        base.wait_for(lambda: own not in queues(), timeout=60,
                      interval=0.5,
                      message='%s outlived its SIGKILLed host' % own)
        # The stream's shared queue is not the policy's business.
        self.assertIn(topic, queues())
