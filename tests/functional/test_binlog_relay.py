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

"""``oslo-publish-manage capture-setup`` and ``oslo-publish-relay`` on
the MariaDB row binlog (private server, real RabbitMQ)."""

import os
import signal
import subprocess
import sys

import fixtures
import sqlalchemy as sa

from oslo_publish.cmd import manage
from oslo_publish import migration
from oslo_publish import outbox
from tests import base
from tests.functional import test_binlog_reader

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _kill(proc):
    if proc.poll() is None:
        proc.kill()


class TestBinlogCommands(test_binlog_reader.BinlogTestCase):

    TABLES = ('plain',)
    EXCLUDE = ()

    def setUp(self):
        super().setUp()
        self.create()
        migration.upgrade(self.engine)
        self.stream = base.unique_name('blr')

    def write_config(self):
        tf = self.useFixture(base.TransportFixture(self.conf))
        path = os.path.join(self.useFixture(fixtures.TempDir()).path,
                            'svc.conf')
        with open(path, 'w') as f:
            f.write('[DEFAULT]\ntransport_url = %s\ncontrol_exchange = %s\n'
                    '[database]\nconnection = %s\n'
                    '[oslo_publish]\nstream = %s\ntopics = %s\n'
                    'tables = plain\ncapture = logical\n'
                    'snapshot_server = false\nrelay_poll_interval = 0.05\n'
                    % (tf.url, tf.exchange, self.db.url, self.stream,
                       tf.topic))
        return path

    def published(self):
        with self.engine.connect() as conn:
            return conn.execute(sa.select(outbox.streams.c.last_seq).where(
                outbox.streams.c.stream == self.stream)).scalar() or 0

    def manage(self, path, command):
        out = self.useFixture(fixtures.StringStream('stdout'))
        err = self.useFixture(fixtures.StringStream('stderr'))
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', out.stream))
        self.useFixture(fixtures.MonkeyPatch('sys.stderr', err.stream))
        code = manage.main(['--config-file', path, command])
        out.stream.flush()
        err.stream.flush()
        return (code, out.getDetails()['stdout'].as_text(),
                err.getDetails()['stderr'].as_text())

    def test_capture_setup_checks_and_names(self):
        path = self.write_config()
        code, out, _ = self.manage(path, 'capture-setup')
        self.assertEqual(0, code)
        self.assertIn('row binlog of database %s' % self.db.name, out)
        self.assertEqual(0, self.manage(path, 'capture-drop')[0])
        self.sql('SET GLOBAL binlog_format = MIXED')
        self.addCleanup(self.sql, 'SET GLOBAL binlog_format = ROW')
        code, _, err = self.manage(path, 'capture-setup')
        self.assertEqual(2, code)
        self.assertIn('binlog_format', err)
        self.assertIn('ROW', err)

    def test_standalone_relay_sigkill_resumes_without_gap(self):
        path = self.write_config()
        args = [sys.executable, '-m', 'oslo_publish.cmd.relay',
                '--config-file', path]

        def spawn():
            proc = subprocess.Popen(args, cwd=ROOT,
                                    stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            self.addCleanup(proc.wait)
            self.addCleanup(_kill, proc)
            return proc

        proc = spawn()
        # The relay starts reading at the binlog's end: wait for its
        # start to be staged before writing.
        base.wait_for(lambda: test_binlog_reader.staged_position(
            self.engine, self.stream), 60, message='the relay never started')
        self.sql("INSERT INTO plain VALUES (1, 'a')")
        base.wait_for(lambda: self.published() == 1, 60,
                      message='the standalone relay published nothing')
        # A large transaction, killed while it is decoded or staged.
        self.sql('INSERT INTO plain SELECT seq, CONCAT("big-", seq) '
                 'FROM seq_2_to_20001')
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        self.sql("UPDATE plain SET name = 'b' WHERE id = 1")
        spawn()
        base.wait_for(lambda: self.published() == 3, 120,
                      message='not resumed after SIGKILL')
        with self.engine.connect() as conn:
            self.assertEqual(0, conn.execute(
                outbox.count_unpublished(self.stream)).scalar())
