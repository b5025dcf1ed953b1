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

"""The README's first command: the demo runs and converges."""

import os
import subprocess
import sys

from tests import base


def _demo(*args, timeout=240):
    cmd = [sys.executable, '-m', 'oslo_publish.cmd.demo'] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True,
                          timeout=timeout, check=False)


class TestDemo(base.TestCase):

    def test_embedded_defaults_converge(self):
        """On SQLite and the in-process bus the mirror ends identical."""
        proc = _demo('--duration', '4', '--rate', '30', '--seed', '7',
                     '--data-dir', os.path.join(self.tmpdir, 'd'))
        self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)
        self.assertIn('CONVERGED (0 differences)', proc.stdout)
        for table in ('hosts', 'instances', 'ports'):
            self.assertRegex(proc.stdout, r'\n%s +\d+ +\d+ +0\n' % table)
        self.assertRegex(proc.stdout, r'write -> visible +p50 [\d.]+ ms')

    def test_real_services_converge_and_rerun(self):
        """On PostgreSQL and RabbitMQ the mirror is identical, run after run.

        The second run reuses the database and the broker: messages of the
        first run still queued for the consumer must not leak into it.
        """
        db = self.useFixture(base.DatabaseFixture('postgresql'))
        base.require_service('RabbitMQ', '127.0.0.1', 5672)
        for _ in range(2):
            proc = _demo('--duration', '3', '--rate', '30',
                         '--connection', db.url,
                         '--transport-url', base.TRANSPORT_URL,
                         '--data-dir', os.path.join(self.tmpdir, 'd'))
            self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)
            self.assertIn('CONVERGED (0 differences)', proc.stdout)

    def test_unreachable_broker_is_one_clear_line(self):
        """A dead broker prints what to check, not a traceback."""
        proc = _demo('--transport-url', 'rabbit://guest:guest@127.0.0.1:9/',
                     '--data-dir', os.path.join(self.tmpdir, 'd'))
        self.assertEqual(2, proc.returncode)
        self.assertNotIn('Traceback', proc.stderr)
        self.assertIn('cannot reach the message broker', proc.stderr)
        self.assertEqual(1, len(proc.stderr.strip().splitlines()))
