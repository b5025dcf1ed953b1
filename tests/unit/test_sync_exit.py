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

"""consumer-sync's exit is bounded whatever threads a library left."""

import os
import subprocess
import sys

import testtools

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

# consumer-sync with its service replaced by one whose start() is the
# body given (indented 8 spaces) and whose stop() returns at once.
TEMPLATE = '''
import os, signal, sys, threading, time
from consumer.cmd import sync

class Consumer(object):
    def __init__(self, conf):
        self.driver = None

    def start(self):
%s
    def stop(self):
        pass

sync.service.Consumer = Consumer
sys.exit(sync.main(['--config-file', os.devnull]))
'''

# A thread that is not a daemon and never ends (as a blocked library
# thread would) is left behind, then the stop is asked for.
SCRIPT = TEMPLATE % '''
        threading.Thread(target=threading.Event().wait,
                         name='blocked-library-thread').start()
        os.kill(os.getpid(), signal.SIGTERM)
'''

# The signal reaches another thread (the main thread has it blocked, as
# a library may leave it): the main thread must still run the handler.
OTHER_THREAD = TEMPLATE % '''
        go = threading.Event()
        main = threading.main_thread().ident

        def send():
            go.wait()
            # Once the main thread is blocked in its wait for the stop.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                frame = sys._current_frames().get(main)
                names = []
                while frame is not None:
                    names.append(frame.f_code.co_name)
                    frame = frame.f_back
                if names[:1] == ['wait'] and 'main' in names:
                    break
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=send, daemon=True).start()
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
        go.set()
'''

# An operator's SIGUSR2 (then the stop).
STACKS = TEMPLATE % '''
        os.kill(os.getpid(), signal.SIGUSR2)
        os.kill(os.getpid(), signal.SIGTERM)
'''


class TestExit(testtools.TestCase):

    def _exits_cleanly(self, script):
        """The script's output, once it exited 0 within 60 s."""
        proc = subprocess.run([sys.executable, '-c', script], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        output = proc.stdout + proc.stderr
        self.assertEqual(0, proc.returncode, output)
        self.assertIn('consumer-sync stopped', output)
        return output

    def test_sigusr2_dumps_every_thread_and_keeps_running(self):
        output = self._exits_cleanly(STACKS)
        self.assertIn('most recent call first', output)
        self.assertIn('in start', output)

    def test_signal_received_by_another_thread_stops(self):
        self.assertIn('Signal 15 received',
                      self._exits_cleanly(OTHER_THREAD))

    def test_blocked_thread_does_not_keep_the_process(self):
        output = self._exits_cleanly(SCRIPT)
        self.assertIn('Threads still running after the stop', output)
        self.assertIn('blocked-library-thread', output)

    def test_threads_left_lists_only_live_non_daemons(self):
        import threading

        from consumer.cmd import sync
        release = threading.Event()
        daemon = threading.Thread(target=release.wait, daemon=True)
        worker = threading.Thread(target=release.wait, name='worker')
        daemon.start()
        worker.start()
        self.addCleanup(worker.join)
        self.addCleanup(release.set)
        self.assertIn(worker, sync._threads_left(0.05))
        self.assertNotIn(daemon, sync._threads_left(0.05))
        release.set()
        worker.join()
        self.assertNotIn(worker, sync._threads_left(0.05))


class TestSyncDefaults(testtools.TestCase):
    """consumer-sync's own defaults, and a configuration file's say."""

    def _conf(self, text=None):
        import tempfile

        from oslo_config import cfg

        from consumer.cmd import sync
        from consumer import options
        conf = cfg.ConfigOpts()
        options.register_opts(conf)
        sync.set_defaults(conf)
        args = []
        if text is not None:
            with tempfile.NamedTemporaryFile('w', suffix='.conf',
                                             delete=False) as handle:
                handle.write(text)
            self.addCleanup(os.unlink, handle.name)
            args = ['--config-file', handle.name]
        conf(args, project='consumer', default_config_files=[])
        return conf

    def test_gc_tenure_is_on_in_consumer_sync(self):
        self.assertTrue(self._conf().consumer.gc_tenure)

    def test_gc_tenure_off_in_the_library(self):
        from oslo_config import cfg

        from consumer import options
        conf = cfg.ConfigOpts()
        options.register_opts(conf)
        conf([], default_config_files=[])
        self.assertFalse(conf.consumer.gc_tenure)

    def test_configuration_file_turns_gc_tenure_off(self):
        conf = self._conf('[consumer]\ngc_tenure = false\n')
        self.assertFalse(conf.consumer.gc_tenure)
