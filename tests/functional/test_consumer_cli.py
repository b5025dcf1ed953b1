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

"""consumer-status, consumer-sync and consumer-dump as an operator runs them.

A real host (tests.functional.consumer_host, heartbeat every 0.2 s) on
RabbitMQ, the consumer's commands as subprocesses.
"""

import os
import signal
import subprocess
import sys
import time

import fixtures

from consumer import state as state_mod
from tests import base
from tests.functional import test_consumer_e2e as e2e

#: The consumer's idea of the host's heartbeat_interval: window 3 s.
HEARTBEAT = 0.5


def _run(*argv, **kwargs):
    return subprocess.run([sys.executable, '-m'] + list(argv),
                          cwd=e2e.ROOT, capture_output=True, text=True,
                          timeout=60, **kwargs)


class _CommandTests(e2e._Base):

    def setUp(self):
        super().setUp()
        self.conf.set_override('heartbeat_interval', HEARTBEAT, 'consumer')
        self.store = state_mod.StateStore.from_url(self.state_db.url)
        self.addCleanup(self.store.close)
        self.store.upgrade()

    def config(self, **consumer_opts):
        for name, value in consumer_opts.items():
            self.conf.set_override(name, value, 'consumer')
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'consumer.conf')
        text = e2e._config_text(self.conf, self.transport)
        text = text.replace('[consumer]\n', '[consumer]\nheartbeat_interval'
                            ' = %s\n' % HEARTBEAT)
        with open(path, 'w') as out:
            out.write(text)
        return path

    def spawn(self, config):
        log = open(config + '.log', 'w')
        self.addCleanup(log.close)
        proc = subprocess.Popen(
            [sys.executable, '-m', 'consumer.cmd.sync', '--config-file',
             config], cwd=e2e.ROOT, stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(e2e._kill, proc)
        return proc

    def status(self, config):
        return _run('consumer.cmd.status', '--config-file', config)

    def wait_status(self, config, code, timeout=60):
        """Poll consumer-status until it exits ``code``; its result."""
        found = []

        def check():
            result = self.status(config)
            found[:] = [result]
            return result.returncode == code
        base.wait_for(check, timeout, interval=0.1,
                      message='consumer-status never exited %d: %r'
                      % (code, found and found[0]))
        return found[0]

    def test_sigkilled_consumer_is_reported_dead(self):
        """A SIGKILLed consumer-sync is not synced within ~2 heartbeats."""
        self.host.command('preload', rows=20)
        config = self.config()
        proc = self.spawn(config)
        good = self.wait_status(config, 0)
        self.assertIn('synced=yes', good.stdout)
        proc.kill()
        proc.wait()
        killed = time.monotonic()
        bad = self.wait_status(config, 1, timeout=30)
        elapsed = time.monotonic() - killed
        # Window 3 s, plus one status refresh and a loaded machine.
        self.assertLess(elapsed, 8.0)
        self.assertIn('synced=no', bad.stdout)
        lines = bad.stderr.splitlines()
        self.assertEqual(1, len(lines), bad.stderr)
        self.assertIn('consumer-sync is running', lines[0])
        self.assertNotIn('Traceback', bad.stderr)

    def test_wrong_topic_consumer_is_reported_deaf(self):
        """A consumer on the wrong topic is not synced, and says so."""
        self.host.command('preload', rows=20)
        config = self.config(topics=[base.unique_name('wrongtopic')])
        self.addCleanup(self._delete_queue,
                        self.conf.consumer.topics[0] + '.info')
        self.spawn(config)
        # The snapshot (RPC) succeeds; only the deltas never arrive.
        base.wait_for(lambda: (self.store.status().get(self.stream) and
                               self.store.status()[self.stream]
                               .counters.get('synced')), 60,
                      message='consumer never applied its snapshot')
        live = time.monotonic()
        self.host.command('write', tx=20, writers=1, seed=4)
        bad = self.wait_status(config, 1, timeout=30)
        self.assertLess(time.monotonic() - live, 8.0)
        self.assertIn('synced=no', bad.stdout)
        lines = bad.stderr.splitlines()
        self.assertEqual(1, len(lines), bad.stderr)
        self.assertIn('no heartbeat or delta heard', lines[0])
        self.assertIn('topics', lines[0])

    def _delete_queue(self, name):
        try:
            with e2e.kombu.Connection(e2e._amqp(self.transport.url)) as c:
                c.channel().queue_delete(name)
        except Exception:  # noqa: best-effort broker cleanup
            pass

    def test_json_keys_carry_the_verdict(self):
        """--json carries synced, reason and the ages of the evidence."""
        self.host.command('preload', rows=5)
        config = self.config()
        proc = self.spawn(config)
        self.wait_status(config, 0)
        shown = _run('consumer.cmd.status', '--config-file', config,
                     '--json')
        record = e2e.json.loads(shown.stdout.splitlines()[0])
        self.assertTrue(record['synced'])
        self.assertIsNone(record['reason'])
        self.assertLess(record['heard_age_seconds'], 3.0)
        for key in ('status_age_seconds', 'reported_synced',
                    'last_heard_at', 'heard_seq', 'applied_seq'):
            self.assertIn(key, record)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)

    def test_sigterm_stops_promptly(self):
        """consumer-sync stops within 2 s of SIGTERM and records stopped."""
        self.host.command('preload', rows=5)
        config = self.config()
        proc = self.spawn(config)
        self.wait_status(config, 0)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(0, proc.wait(30))
        # stop_timeout is 1 s; the rest is interpreter exit on a loaded
        # machine.
        self.assertLess(time.monotonic() - sent, 3.0)
        self.assertEqual('stopped', self.store.status()[self.stream].state)

    def test_sigterm_while_resyncing_is_bounded(self):
        """SIGTERM during a snapshot that cannot finish stops promptly."""
        # No host serves this stream: the initial snapshot waits for
        # snapshot_timeout (20 s) and is retried.
        config = self.config(streams=[base.unique_name('nohost')])
        proc = self.spawn(config)
        base.wait_for(lambda: self.store.status(), 60,
                      message='consumer-sync wrote no status')
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(0, proc.wait(30))
        self.assertLess(time.monotonic() - sent, 3.0)

    def test_dump_usage_errors_are_one_line(self):
        """dump without --table or of an unknown table: one line, no 0."""
        config = self.config()
        missing = _run('consumer.cmd.dump', '--config-file', config)
        self.assertEqual(2, missing.returncode)
        self.assertEqual(1, len(missing.stderr.splitlines()),
                         missing.stderr)
        self.assertIn('--table', missing.stderr)
        unknown = _run('consumer.cmd.dump', '--config-file', config,
                       '--table', 'no_such_table')
        self.assertEqual(1, unknown.returncode)
        self.assertIn('no_such_table', unknown.stderr)
        self.assertNotIn('Traceback', missing.stderr + unknown.stderr)

    def test_dump_into_a_closed_pipe_is_quiet(self):
        """dump | head ends with status 0 and no BrokenPipe traceback."""
        self.host.command('preload', rows=3000)
        config = self.config()
        proc = self.spawn(config)
        self.wait_status(config, 0)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        table = e2e.consumer_host.TABLES[0]
        dump = subprocess.Popen(
            [sys.executable, '-m', 'consumer.cmd.dump', '--config-file',
             config, '--table', table], cwd=e2e.ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.assertTrue(dump.stdout.readline())
        dump.stdout.close()
        err = dump.stderr.read()
        dump.stderr.close()
        self.assertEqual(0, dump.wait(60), err)
        self.assertNotIn('Traceback', err)
        self.assertNotIn('BrokenPipe', err)


class TestConsumerCommandsPostgreSQL(_CommandTests, base.TestCase):
    HOST_BACKEND = 'postgresql'
    STATE_BACKEND = 'postgresql'


class TestConsumerCommandsMySQL(_CommandTests, base.TestCase):
    HOST_BACKEND = 'mysql'
    STATE_BACKEND = 'mysql'
