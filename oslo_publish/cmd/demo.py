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

"""``oslo-publish-demo``: the library working in one command."""

import logging
import os
import sys
import warnings

# A dependency of oslo.messaging warns at import time that eventlet is
# deprecated; the demo uses threads only, so the warning is noise here.
warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')

from oslo_publish.demo import run as demo_run  # noqa: E402


def main(argv=None):
    args = demo_run.parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose
                        else logging.WARNING,
                        format='%(levelname)s %(name)s: %(message)s')
    if not args.verbose:
        # Every demo on a broker shares the demo's topic; a consumer
        # rejects (and would warn about) the deltas of other demo hosts.
        logging.getLogger('consumer.verify').setLevel(logging.ERROR)
        # py-amqp warns of each delivery that arrives while a channel
        # closes ("Received method (60, 60) during closing channel"):
        # other demos' deltas on that shared topic, harmless at exit.
        logging.getLogger('amqp').setLevel(logging.ERROR)
        # Libraries log their failures with tracebacks; the demo says
        # what went wrong in one line, --verbose shows the details.
        for handler in logging.getLogger().handlers:
            handler.setFormatter(_OneLine('%(levelname)s %(name)s: '
                                          '%(message)s'))
    try:
        code = demo_run.run(args)
    except demo_run.DemoError as exc:
        sys.stderr.write('oslo-publish-demo: error: %s\n' % exc)
        code = 2
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:  # noqa: anything else is still one line
        if args.verbose:
            raise
        first = (str(exc).strip().splitlines() or [''])[0]
        sys.stderr.write('oslo-publish-demo: error: %s: %s (rerun with '
                         '--verbose for details)\n'
                         % (type(exc).__name__, first))
        code = 2
    if not getattr(args, 'clean_exit', True):
        # A half did not stop in time; its threads would hold the exit.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


class _OneLine(logging.Formatter):
    """A formatter that leaves tracebacks out."""

    def format(self, record):
        record = logging.makeLogRecord(record.__dict__)
        record.exc_info = record.exc_text = record.stack_info = None
        return super().format(record).splitlines()[0]


if __name__ == '__main__':
    sys.exit(main())
