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
and the process exits anyway. That is safe for the same reason a crash
is: a message is acknowledged only after its position is committed, so
whatever was in hand is redelivered and recognised on the next start.
"""

import logging
import os
import signal
import sys
import threading

from oslo_config import cfg
from oslo_log import log

from consumer import options
from consumer import service

LOG = log.getLogger(__name__)


def _conf(argv):
    conf = cfg.ConfigOpts()
    options.register_opts(conf)
    log.register_options(conf)
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
    consumer = service.Consumer(conf)
    consumer.start()
    LOG.info('consumer-sync running (driver %s)', conf.consumer.driver)
    try:
        while not stop.wait(3600):
            pass
    finally:
        finished = _bounded_stop(consumer, conf.consumer.stop_timeout)
    LOG.info('consumer-sync stopped')
    if not finished:
        # Threads of the broker library or a snapshot read are still
        # blocked; the interpreter would wait for them at exit.
        logging.shutdown()
        os._exit(0)
    return 0


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
    try:
        # The listener's poll still holds driver.stop(); the reconcilers
        # are told to stop now so the final status says "stopped".
        for reconciler in consumer.driver.reconcilers.values():
            reconciler.stop(timeout=0.1)
        consumer.write_status()
    except Exception as exc:  # noqa: best effort, the store may be closing
        LOG.warning('Cannot write the final status: %s', type(exc).__name__)
    return False


if __name__ == '__main__':
    sys.exit(main())
