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
import re
import subprocess
import sys
import time

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
        # Nothing of the runs' stream stays on the broker: the pools, the
        # per-process snapshot queues and the stream's shared one.
        stream = re.search(r"stream '([^']+)'", proc.stdout).group(1)
        out = subprocess.run(['rabbitmqctl', 'list_queues', '-q',
                              '--no-table-headers', 'name'],
                             capture_output=True, text=True, timeout=60,
                             check=True).stdout
        self.assertEqual([], [q for q in out.split() if stream in q])

    def test_unreachable_broker_is_one_clear_line(self):
        """A dead broker prints what to check, not a traceback."""
        proc = _demo('--transport-url', 'rabbit://guest:guest@127.0.0.1:9/',
                     '--data-dir', os.path.join(self.tmpdir, 'd'))
        self.assertEqual(2, proc.returncode)
        self.assertNotIn('Traceback', proc.stderr)
        self.assertIn('cannot reach the message broker', proc.stderr)
        self.assertEqual(1, len(proc.stderr.strip().splitlines()))


class TestDemoBadInput(base.TestCase):
    """Every bad input: exit 2, one line on stderr, no traceback."""

    def assertOneLine(self, proc, *needles):
        self.assertEqual(2, proc.returncode, proc.stdout + proc.stderr)
        self.assertNotIn('Traceback', proc.stdout + proc.stderr)
        lines = proc.stderr.strip().splitlines()
        self.assertEqual(1, len(lines), proc.stderr)
        for needle in needles:
            self.assertIn(needle, lines[0])

    def demo(self, *args, **kwargs):
        return _demo('--duration', '1',
                     '--data-dir', os.path.join(self.tmpdir, 'd'),
                     *args, **kwargs)

    def test_unknown_database_scheme(self):
        """--connection notadb://x names the unsupported database."""
        self.assertOneLine(self.demo('--connection', 'notadb://x'),
                           '--connection', 'unsupported')

    def test_unknown_transport_scheme(self):
        """--transport-url notatransport://x: no stevedore warning too."""
        self.assertOneLine(self.demo('--transport-url', 'notatransport://x'),
                           '--transport-url', 'notatransport')

    def test_out_of_range_numbers(self):
        """A negative duration or no writers: argparse's one error line."""
        for args in (('--duration', '-1'), ('--writers', '0')):
            proc = self.demo(*args)
            self.assertEqual(2, proc.returncode, proc.stderr)
            self.assertNotIn('Traceback', proc.stderr)
            errors = [li for li in proc.stderr.splitlines()
                      if 'error:' in li]
            self.assertEqual(1, len(errors), proc.stderr)
            self.assertIn(args[0], errors[0])

    def test_bare_file_path(self):
        """A file path instead of a URL says what a URL looks like."""
        self.assertOneLine(self.demo('--connection', '/tmp/x.sqlite'),
                           'not a database URL', 'sqlite:///')

    def test_missing_state_database(self):
        """A --state-connection database that does not exist is named."""
        url = base.PG_URL.replace('postgresql+psycopg2://', 'postgresql://')
        url = url.rsplit('/', 1)[0] + '/no_such_db_ops'
        self.assertOneLine(self.demo('--state-connection', url),
                           'consumer state database', 'no_such_db_ops')

    def test_unwritable_data_dir(self):
        """An unwritable --data-dir is named."""
        self.assertOneLine(_demo('--duration', '1', '--data-dir',
                                 '/proc/oslo-publish-demo'),
                           '--data-dir')

    def test_bad_broker_credentials(self):
        """A refused broker login says to check the credentials."""
        base.require_service('RabbitMQ', '127.0.0.1', 5672)
        self.assertOneLine(self.demo(
            '--transport-url', 'rabbit://guest:wrong@127.0.0.1:5672/'),
            'refused the login')

    def test_documented_url_forms_use_installed_drivers(self):
        """postgresql:// and mysql:// (no driver) reach the database."""
        pg = self.useFixture(base.DatabaseFixture('postgresql'))
        my = self.useFixture(base.DatabaseFixture('mysql'))
        for db, scheme in ((pg, 'postgresql://'), (my, 'mysql://')):
            url = scheme + db.url.split('://', 1)[1]
            proc = self.demo('--connection', url, '--rate', '20')
            self.assertEqual(0, proc.returncode, proc.stdout + proc.stderr)
            self.assertIn('CONVERGED (0 differences)', proc.stdout)

    def test_consumer_without_host_honours_converge_timeout(self):
        """--role consumer with no host gives up after --converge-timeout."""
        base.require_service('RabbitMQ', '127.0.0.1', 5672)
        start = time.monotonic()
        proc = self.demo('--role', 'consumer', '--transport-url',
                         base.TRANSPORT_URL, '--converge-timeout', '3')
        elapsed = time.monotonic() - start
        self.assertOneLine(proc, 'did not sync within 3.0s')
        # 3 s of waiting, the bounded stop (about 1 s) and interpreter start
        # and imports on a loaded machine; it took 29.7 s with 8 s before.
        self.assertLess(elapsed, 15.0)
