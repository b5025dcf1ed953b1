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


"""Pre-fork servers: gunicorn --preload workers' commits are published.

``install()`` runs in the gunicorn master (``--preload``), which then
forks its workers; the relay thread lives in the master only. Every
commit of a worker must still be published at once (not at the next
``relay_poll_interval`` poll) as one gapless sequence.
"""

import importlib.util
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

import sqlalchemy as sa

from oslo_publish import wire
from tests import base
from tests.functional import delivery

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
POLL = 5.0  # the relay's backstop poll: far longer than the bounds below
#: Bound of the median commit -> bus delay: a relay that waited for its
#: backstop poll instead of being woken would take POLL / 2 on median.
PROMPT = 0.5


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class TestGunicornPreloadPostgreSQL(delivery.RelayTestMixin,
                                    base.BackendTestCase):
    BACKEND = 'postgresql'

    def setUp(self):
        super().setUp()
        if importlib.util.find_spec('gunicorn') is None:
            self.fail('gunicorn is not installed: pip install -r '
                      'test-requirements.txt')
        meta = sa.MetaData()
        sa.Table('items', meta,
                 sa.Column('id', sa.Integer, primary_key=True,
                           autoincrement=False),
                 sa.Column('name', sa.String(64), nullable=False))
        meta.create_all(self.engine)
        conf = os.path.join(self.tmpdir, 'prefork.conf')
        with open(conf, 'w') as f:
            f.write('[DEFAULT]\ntransport_url = %s\ncontrol_exchange = %s\n'
                    '[oslo_messaging_rabbit]\namqp_durable_queues = true\n'
                    '[oslo_publish]\ntables = items\nstream = %s\n'
                    'topics = %s\nsnapshot_server = false\n'
                    'relay_poll_interval = %s\nheartbeat_interval = 60\n'
                    % (self.tf.url, self.tf.exchange, self.stream,
                       self.tf.topic, POLL))
        self.port = _free_port()
        env = dict(os.environ, PREFORK_CONF=conf,
                   PREFORK_DB_URL=self.db.url,
                   PYTHONPATH=os.pathsep.join(
                       [ROOT] + [p for p in sys.path if p]))
        self.log = open(os.path.join(self.tmpdir, 'gunicorn.log'), 'w+')
        self.addCleanup(self.log.close)
        self.proc = subprocess.Popen(
            [sys.executable, '-m', 'gunicorn', '--preload', '--workers',
             '3', '--bind', '127.0.0.1:%d' % self.port,
             '--graceful-timeout', '5', 'tests.functional.prefork_app:app'],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.addCleanup(self._stop)
        base.wait_for(self._up, 60, message='gunicorn did not start')

    def _stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def _log(self):
        self.log.seek(0)
        return self.log.read()

    def _up(self):
        if self.proc.poll() is not None:
            self.fail('gunicorn exited: %s' % self._log())
        try:
            with urllib.request.urlopen(
                    'http://127.0.0.1:%d/' % self.port, timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def _write(self, item_id):
        request = urllib.request.Request(
            'http://127.0.0.1:%d/write?id=%d' % (self.port, item_id),
            data=b'', method='POST')
        with urllib.request.urlopen(request, timeout=10) as resp:
            pid, got = resp.read().split()
        self.assertEqual(item_id, int(got))
        return int(pid)

    def test_workers_commits_are_published_promptly_and_gapless(self):
        """Worker commits reach the bus promptly (woken), seqs 1..N."""
        count = 30
        pids = set()
        delays = []
        for n in range(1, count + 1):
            pids.add(self._write(n))
            began = time.monotonic()
            self.receiver.wait_seqs(n, timeout=2 * POLL)
            delays.append(time.monotonic() - began)
        self.assertNotIn(self.proc.pid, pids)
        # The median shows the wake-up (a loaded machine may delay one
        # commit past PROMPT, never past half the backstop poll).
        self.assertLess(statistics.median(delays), PROMPT,
                        'median commit -> bus %.3fs (poll %ss); log:\n%s'
                        % (statistics.median(delays), POLL, self._log()))
        self.assertLess(max(delays), POLL / 2,
                        'slowest commit -> bus %.3fs (poll %ss); log:\n%s'
                        % (max(delays), POLL, self._log()))
        self.assertEqual(list(range(1, count + 1)), self.receiver.seqs()
                         if len(self.receiver.seqs()) == count
                         else sorted(set(self.receiver.seqs())))
        keys = [change['key'][0] for tx in self.receiver.transactions()
                for change in tx['changes']]
        self.assertEqual(list(range(1, count + 1)), sorted(set(keys)))
        epochs = {wire.message_epoch(m) for m in self.receiver.deltas()}
        self.assertEqual(1, len(epochs))
        base.wait_for(lambda: delivery.pending(self.engine, self.stream)
                      == 0)
