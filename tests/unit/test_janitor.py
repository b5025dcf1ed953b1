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

"""Reaping the private servers of killed test processes."""

import os
import subprocess
import sys
import time

import fixtures
import testtools

from benchmarks import janitor


class TestReap(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path

    def _dead_pid(self):
        proc = subprocess.Popen([sys.executable, '-c', 'pass'])
        proc.wait()
        return proc.pid

    def _dir(self, name, owner):
        top = os.path.join(self.tmp, name)
        os.makedirs(os.path.join(top, 'data'))
        with open(os.path.join(top, janitor.OWNER), 'w') as f:
            f.write(owner)
        return top

    def _server(self, top, pidfile='data/postmaster.pid', argv_dir=None):
        """A process standing for a server, its pid in ``pidfile``."""
        proc = subprocess.Popen(
            [sys.executable, '-c', 'import time; time.sleep(120)',
             argv_dir or os.path.join(top, 'data')])
        self.addCleanup(proc.wait)
        self.addCleanup(proc.kill)
        # Until the new process has exec'd, its command line is empty.
        deadline = time.monotonic() + 10
        while 'sleep' not in janitor._cmdline(proc.pid):
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.01)
        with open(os.path.join(top, pidfile), 'w') as f:
            f.write('%d\n' % proc.pid)
        return proc

    def test_dead_owner_server_stopped_and_directory_removed(self):
        top = self._dir('bench_pg_x', '%d 1\n' % self._dead_pid())
        server = self._server(top)
        self.assertEqual([top], janitor.reap(self.tmp, timeout=10))
        self.assertIsNotNone(server.wait(10))
        self.assertFalse(os.path.exists(top))

    def test_live_owner_is_left_alone(self):
        me = '%d %s\n' % (os.getpid(), janitor.start_time(os.getpid()))
        top = self._dir('oslo_publish_mariadb_x', me)
        server = self._server(top, 'mariadb.pid')
        self.assertEqual([], janitor.reap(self.tmp, timeout=10))
        self.assertIsNone(server.poll())
        self.assertTrue(os.path.isdir(top))

    def test_reused_owner_pid_counts_as_dead(self):
        # Our own pid with another start time: the owner is gone and
        # its pid was reused.
        top = self._dir('oslo-publish-rmq-x', '%d 0\n' % os.getpid())
        self.assertEqual([top], janitor.reap(self.tmp, timeout=10))

    def test_reused_server_pid_is_not_killed(self):
        top = self._dir('oslo-publish-cluster-x',
                        '%d 1\n' % self._dead_pid())
        os.makedirs(os.path.join(top, 'n0'))
        # The pid file names a process that is not this directory's.
        other = self._server(top, 'n0/pid', argv_dir='/elsewhere')
        self.assertEqual([top], janitor.reap(self.tmp, timeout=10))
        self.assertIsNone(other.poll())

    def test_other_directories_untouched(self):
        top = self._dir('something_else', '%d 1\n' % self._dead_pid())
        self.assertEqual([], janitor.reap(self.tmp, timeout=10))
        self.assertTrue(os.path.isdir(top))

    def test_private_dir_claims_ownership(self):
        self.useFixture(fixtures.MonkeyPatch('tempfile.tempdir', self.tmp))
        top = janitor.private_dir('bench_pg_')
        self.assertEqual(self.tmp, os.path.dirname(top))
        self.assertTrue(janitor.owner_alive(top))
        self.assertEqual([], janitor.reap(self.tmp))
