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

"""A stager publishing straight from the log, to be SIGKILLed by a test.

``python -m tests.functional.logical_direct_relay URL STREAM FILE``
reads the stream's slot or binlog (the tables of
:func:`tests.functional.test_logical_capture.make_conf`) and publishes
straight from it; every delta transaction the "broker" confirms is
appended to FILE as a JSON line. It prints ``streaming`` once the reader
is connected and ``published`` after the first confirmed delta message,
then waits (before recording anything) until it is killed.
"""

import json
import sys

import sqlalchemy as sa

from oslo_publish.logcapture import binlog
from oslo_publish.logcapture import pgoutput
from oslo_publish.logcapture import staging
from oslo_publish import relay as relay_mod
from oslo_publish import schema
from oslo_publish import wire
from tests.functional import logical_stager
from tests.functional import test_logical_capture


class FilePublisher(object):
    """Appends each delta transaction to a file, then stops."""

    def __init__(self, path):
        self._file = open(path, 'a')

    def publish(self, event_type, payload):
        if event_type != wire.EVENT_DELTA:
            return
        for tx in payload['transactions']:
            self._file.write(json.dumps(tx) + '\n')
        self._file.flush()
        print('published', flush=True)
        sys.stdin.readline()  # the test kills the process meanwhile


def main(url, stream, path):
    engine = sa.create_engine(url)
    conf = test_logical_capture.make_conf(stream)
    tables = schema.resolve_tables(conf, engine=engine)
    relay = relay_mod.Relay(conf, engine, stream, tables,
                            FilePublisher(path))
    with relay.holding():
        pass   # the stream row, as the relay's first cycle makes it
    if engine.dialect.name in ('mysql', 'mariadb'):
        reader = binlog.Reader(conf, engine, tables, stream)
    else:
        reader = pgoutput.Reader(conf, engine, tables, stream)
    logical_stager.stream_forever(
        reader, staging.Stager(engine, stream, reader, relay=relay))


if __name__ == '__main__':
    sys.exit(main(*sys.argv[1:4]))
