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

"""A private three-node RabbitMQ cluster, for tests that lose nodes.

Each node runs the machine's RabbitMQ installation as user rabbitmq, with
a data directory, node name, AMQP port and distribution port of its own;
they share the Erlang cookie of ``/var/lib/rabbitmq`` (the same ``HOME``)
and are joined with ``rabbitmqctl join_cluster``. A node that cannot start
or join fails the test with its log; it is never skipped.
"""

import os
import shutil
import socket
import subprocess

import fixtures

from benchmarks import janitor
from tests import base

SERVER = '/usr/lib/rabbitmq/bin/rabbitmq-server'


class _Node(object):
    """One node: its name, ports, directory and ``rabbitmqctl``."""

    def __init__(self, root, index):
        self.index = index
        self.name = '%s@localhost' % base.unique_name('clu%d' % index)
        self.port = base._free_port()
        self.dist_port = base._free_port()
        self.dir = os.path.join(root, 'n%d' % index)
        os.mkdir(self.dir)
        with open(os.path.join(self.dir, 'rabbitmq.conf'), 'w') as f:
            f.write('listeners.tcp.local = 127.0.0.1:%d\n'
                    'loopback_users = none\n' % self.port)
        with open(os.path.join(self.dir, 'env.conf'), 'w') as f:
            f.write('ERL_EPMD_ADDRESS=127.0.0.1\n')

    def start(self):
        env = {
            'HOME': '/var/lib/rabbitmq',
            'PATH': os.environ.get('PATH', '/usr/sbin:/usr/bin:/bin'),
            'RABBITMQ_CONF_ENV_FILE': os.path.join(self.dir, 'env.conf'),
            'RABBITMQ_CONFIG_FILE': os.path.join(self.dir, 'rabbitmq.conf'),
            'RABBITMQ_NODENAME': self.name,
            'RABBITMQ_DIST_PORT': str(self.dist_port),
            'RABBITMQ_MNESIA_BASE': os.path.join(self.dir, 'mnesia'),
            'RABBITMQ_LOG_BASE': os.path.join(self.dir, 'log'),
            'RABBITMQ_PID_FILE': os.path.join(self.dir, 'pid'),
            'RABBITMQ_ENABLED_PLUGINS_FILE': os.path.join(self.dir,
                                                          'plugins'),
        }
        cmd = ['runuser', '-u', 'rabbitmq', '--', 'env']
        cmd += ['%s=%s' % kv for kv in sorted(env.items())]
        cmd += [SERVER, '-detached']
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)

    def ctl(self, *args, check=True, timeout=120):
        proc = subprocess.run(['rabbitmqctl', '-q', '-n', self.name]
                              + list(args), capture_output=True,
                              text=True, timeout=timeout, check=False)
        if check and proc.returncode:
            raise AssertionError('rabbitmqctl %s on %s failed: %s%s\n%s'
                                 % (' '.join(args), self.name, proc.stdout,
                                    proc.stderr, self.log_tail()))
        return proc.stdout

    def listening(self):
        try:
            socket.create_connection(('127.0.0.1', self.port), 0.5).close()
            return True
        except OSError:
            return False

    def wait_up(self, timeout=90):
        base.wait_for(self.listening, timeout=timeout, interval=0.1,
                      message='cluster node %s did not listen on %d:\n%s'
                      % (self.name, self.port, self.log_tail()))

    def log_tail(self):
        out = []
        logdir = os.path.join(self.dir, 'log')
        for name in sorted(os.listdir(logdir)) if os.path.isdir(logdir) \
                else []:
            try:
                with open(os.path.join(logdir, name)) as f:
                    out.append('%s:\n%s' % (name, f.read()[-1500:]))
            except OSError:
                pass
        return '\n'.join(out)

    def stop_app(self):
        """``rabbitmqctl stop_app``: the node leaves service."""
        self.ctl('stop_app')
        base.wait_for(lambda: not self.listening(), timeout=60,
                      message='node %s still listening' % self.name)

    def start_app(self):
        """``rabbitmqctl start_app`` and wait until it listens again."""
        self.ctl('start_app')
        self.wait_up()


class RabbitClusterFixture(fixtures.Fixture):
    """Three clustered RabbitMQ nodes; ``url`` lists all three hosts.

    Attributes: ``nodes`` (three ``_Node``), ``url`` (an oslo.messaging
    ``transport_url`` naming every node).
    """

    SIZE = 3

    def _setUp(self):
        for tool in ('rabbitmqctl', 'runuser'):
            if shutil.which(tool) is None:
                raise base.ServiceUnavailable(
                    '%s not found: a RabbitMQ cluster needs the RabbitMQ '
                    'server installed' % tool)
        if not os.path.exists(SERVER):
            raise base.ServiceUnavailable('%s not found' % SERVER)
        root = janitor.private_dir('oslo-publish-cluster-')
        self.addCleanup(base._rmtree, root)
        self.nodes = [_Node(root, i) for i in range(self.SIZE)]
        subprocess.run(['chown', '-R', 'rabbitmq', root], check=True)
        for node in self.nodes:
            node.start()
            self.addCleanup(node.ctl, 'stop', check=False, timeout=60)
        for node in self.nodes:
            node.wait_up()
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl('stop_app')
            node.ctl('join_cluster', first.name)
            node.ctl('start_app')
            node.wait_up()
        running = first.ctl('eval',
                            'length(rabbit_nodes:all_running()).')
        if running.strip() != str(self.SIZE):
            raise AssertionError('cluster has %s running nodes, not %d:\n%s'
                                 % (running.strip(), self.SIZE,
                                    first.ctl('cluster_status')))
        self.url = 'rabbit://%s/' % ','.join(
            'guest:guest@127.0.0.1:%d' % n.port for n in self.nodes)

    def node(self, name):
        """The node called ``name`` (``rabbit@...`` as RabbitMQ says)."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def queue_leader(self, queue, via=None):
        """The node that leads quorum queue ``queue``, or None."""
        via = via or next(n for n in self.nodes if n.listening())
        out = via.ctl('list_queues', '--no-table-headers', 'name', 'type',
                      'leader', check=False)
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == queue:
                if parts[1] != 'quorum':
                    raise AssertionError('queue %s is %s, not quorum'
                                         % (queue, parts[1]))
                try:
                    return self.node(parts[2])
                except KeyError:
                    return None
        return None
