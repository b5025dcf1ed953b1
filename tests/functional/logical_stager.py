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

"""A stager alone in a process, to be SIGKILLed by a test.

``python -m tests.functional.logical_stager URL STREAM`` stages the
stream's slot into the outbox (the tables of
:func:`tests.functional.test_logical_capture.make_conf`) and prints
``streaming`` once the reader is connected.
"""

import sys

import sqlalchemy as sa

from oslo_publish.logcapture import pgoutput
from oslo_publish.logcapture import staging
from oslo_publish import schema
from tests.functional import test_logical_capture


def main(url, stream):
    engine = sa.create_engine(url)
    conf = test_logical_capture.make_conf(stream)
    tables = schema.resolve_tables(conf, engine=engine)
    reader = pgoutput.Reader(conf, engine, tables, stream)
    stream_forever(reader, staging.Stager(engine, stream, reader))


def stream_forever(reader, stager):
    """Stage what ``reader`` decodes until the process is killed."""
    reader.start(stager.staged_position())
    print('streaming', flush=True)
    while True:
        stager.stage(reader.read(0.5))


if __name__ == '__main__':
    sys.exit(main(*sys.argv[1:3]))
