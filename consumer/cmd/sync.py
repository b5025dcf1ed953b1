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

"""``consumer-sync --config-file F``: the consumer as a long-lived service.

Creates or upgrades the state store schema, starts the configured driver
and runs until SIGTERM or SIGINT, then stops cleanly: the listener stops
taking messages and finishes the ones in hand (each committed with its
position before it is acknowledged), then the reconcilers stop, and the
final status is written. Nothing applied is lost; nothing unapplied was
acknowledged.

The stop is bounded by ``[consumer] stop_timeout``: when a snapshot read
or the broker's poll holds it longer, the status is written as stopped
and the process exits anyway. So is the exit itself: a thread that is
not a daemon and still runs 2 s after the stop (left blocked by a
library) is named in the log with where it is blocked, and the process
exits without waiting for it. That is safe for the same reason a crash
is: a message is acknowledged only after its position is committed, so
whatever was in hand is redelivered and recognised on the next start.

Its defaults differ from the library's in one option
(:func:`set_defaults`): ``[consumer] gc_tenure`` is on, the process
being the consumer's alone.
"""

import faulthandler
import logging
import os
import signal
import sys
import threading
import time
import traceback

from oslo_config import cfg
from oslo_log import log

from consumer import options
from consumer import service

LOG = log.getLogger(__name__)


def set_defaults(conf):
    """The defaults of a dedicated consumer process (registered ``conf``).

    ``[consumer] gc_tenure`` is on: the process's collector is the
    consumer's own, and without tenuring a growing cache is rescanned by
    every full collection (see :mod:`consumer.gc_tenure`). A
    configuration file that sets it still wins.
    """
    conf.set_default('gc_tenure', True, 'consumer')


def _conf(argv):
    conf = cfg.ConfigOpts()
    options.register_opts(conf)
    log.register_options(conf)
    set_defaults(conf)
    conf(argv, project='consumer')
    log.setup(conf, 'consumer')
    return conf


def main(argv=None):
    conf = _conf(sys.argv[1:] if argv is None else argv)
    stop = threading.Event()

    def _stop(signum, frame):
        LOG.info('Signal %d received; stopping', signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    # As OpenStack services' report on SIGUSR2: every thread's stack on
    # stderr, written by the interpreter even when no Python code runs.
    faulthandler.register(signal.SIGUSR2, all_threads=True)
    consumer = service.Consumer(conf)
    consumer.start()
    LOG.info('consumer-sync running (driver %s)', conf.consumer.driver)
    try:
        # Short waits: a signal delivered to another thread only marks
        # the handler pending, and the main thread runs it at its next
        # wake-up; blocked for an hour it would not stop for an hour.
        while not stop.wait(SIGNAL_POLL):
            pass
    finally:
        finished = _bounded_stop(consumer, conf.consumer.stop_timeout)
    LOG.info('consumer-sync stopped')
    left = _threads_left(EXIT_GRACE)
    if not finished or left:
        # Threads of the broker library or a snapshot read are still
        # blocked; the interpreter would wait for them at exit.
        if left:
            LOG.warning('Threads still running after the stop, exiting '
                        'anyway: %s', _stacks(left))
        logging.shutdown()
        os._exit(0)
    return 0


#: Seconds between the main thread's checks for a pending signal.
SIGNAL_POLL = 1.0

#: Seconds the exit waits for threads (not daemons) that outlive the stop.
EXIT_GRACE = 2.0


def _threads_left(timeout):
    """Non-daemon threads still alive after up to ``timeout`` seconds.

    The interpreter's exit joins every such thread without a bound: one
    left blocked by a library (a broker connection, an executor) would
    keep the stopped process alive for ever.
    """
    deadline = time.monotonic() + timeout
    me = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not me and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    return [t for t in threading.enumerate()
            if t is not me and not t.daemon and t.is_alive()]


def _stacks(threads):
    """Each thread's name and where it is blocked, for the log."""
    frames = sys._current_frames()
    out = []
    for thread in threads:
        frame = frames.get(thread.ident)
        where = ''.join(traceback.format_stack(frame)[-3:]) if frame \
            else ' (no frame)\n'
        out.append('%s:\n%s' % (thread.name, where))
    return '\n'.join(out)


def _bounded_stop(consumer, timeout):
    """Stop ``consumer``; True when it finished within ``timeout``."""
    stopper = threading.Thread(target=consumer.stop, name='consumer-stop',
                               daemon=True)
    stopper.start()
    stopper.join(timeout)
    if stopper.is_alive():
        # Let the status loop finish its last write (it ends at once once
        # stopping) before the final status is written below.
        consumer.join_status(2.0)
    if not stopper.is_alive():
        return True
    LOG.warning('Stop did not finish within %.1fs (snapshot read or broker '
                'poll in progress); exiting, unacknowledged messages will '
                'be redelivered', timeout)
    # The listener's poll still holds driver.stop(); the reconcilers are
    # told to stop now so the final status says "stopped". Bounded too:
    # the state store may be what holds the stop.
    writer = threading.Thread(target=_final_status, args=(consumer,),
                              name='consumer-final-status', daemon=True)
    writer.start()
    writer.join(FINAL_STATUS_TIMEOUT)
    if writer.is_alive():
        LOG.warning('The final status was not written within %.1fs',
                    FINAL_STATUS_TIMEOUT)
    return False


#: Seconds a stop that ran out of time waits for its final status write.
FINAL_STATUS_TIMEOUT = 5.0


def _final_status(consumer):
    try:
        for reconciler in consumer.driver.reconcilers.values():
            reconciler.stop(timeout=0.1)
        consumer.write_status()
    except Exception as exc:  # noqa: best effort, the store may be closing
        LOG.warning('Cannot write the final status: %s', type(exc).__name__)


if __name__ == '__main__':
    sys.exit(main())
