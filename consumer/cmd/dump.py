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


"""``consumer-dump``: print a table's mirrored rows from the state store.

::

    consumer-dump --config-file consumer.conf --table instances \\
        [--stream nova]

One JSON object per line, in primary-key order, values in the wire
encoding (:func:`oslo_publish.wire.encode_row`), keys sorted. Without
``--stream`` the table must be held by exactly one stream.

Exit status: 0 rows printed (none for an empty table, or in the chosen
``--stream``), 1 no stream mirrors a table of that name (or the state
store cannot be read: one line says what to check), 2 bad usage
(missing ``--table``, several streams hold it). A reader that closes the
pipe early (``| head``) ends the command quietly.
"""

import json
import os
import sys

from oslo_config import cfg
from oslo_db import exception as db_exc
from oslo_log import log
import sqlalchemy as sa

from consumer.cmd import store_errors
from consumer import options
from consumer import state

LOG = log.getLogger(__name__)

_cli_opts = [
    cfg.StrOpt('table', required=True,
               help='Table whose mirrored rows are printed.'),
    cfg.StrOpt('stream',
               help='Stream the table belongs to (needed when several '
                    'streams hold a table of that name).'),
]


def dump(store, table, stream=None, out=None):
    """Write the rows of ``table`` as JSON lines to ``out``.

    :returns: number of rows written.
    :raises ValueError: when ``stream`` is None and several streams hold
        the table.
    :raises LookupError: when ``stream`` is None and no stream mirrors a
        table of that name.
    """
    out = out or sys.stdout
    if stream is None:
        held = store.row_streams(table)
        if len(held) > 1:
            raise ValueError('table %s is held by streams %s; choose one '
                             'with --stream' % (table, ', '.join(held)))
        if not held:
            if _known(store, table):
                return 0
            raise LookupError('no stream mirrors a table named %s' % table)
        stream = held[0]
    count = 0
    for _key, row in store.load_encoded_rows(stream, table):
        out.write(json.dumps(row, sort_keys=True, ensure_ascii=False))
        out.write('\n')
        count += 1
    return count


def _known(store, table):
    """True when some stream has a position for ``table`` (maybe empty)."""
    with store.engine.connect() as conn:
        return conn.execute(sa.select(state.positions.c.id).where(
            state.positions.c.scope_id == table).limit(1)).first() \
            is not None


def main(argv=None):
    conf = cfg.ConfigOpts()
    options.register_opts(conf)
    log.register_options(conf)
    # Logs go to stderr; stdout carries the command's output only.
    conf.set_default('use_stderr', True)
    conf.register_cli_opts(_cli_opts)
    try:
        conf(sys.argv[1:] if argv is None else argv, project='consumer',
             prog='consumer-dump')
    except cfg.Error as exc:
        sys.stderr.write('consumer-dump: %s (e.g. --table NAME)\n' % exc)
        return 2
    log.setup(conf, 'consumer')
    store = state.StateStore(conf)
    try:
        with store_errors.quiet():
            count = dump(store, conf.table, conf.stream)
        sys.stdout.flush()
    except ValueError as exc:
        sys.stderr.write('consumer-dump: %s\n' % exc)
        return 2
    except LookupError as exc:
        sys.stderr.write('consumer-dump: %s\n' % exc)
        return 1
    except (db_exc.DBError, sa.exc.SQLAlchemyError) as exc:
        sys.stderr.write('consumer-dump: %s\n'
                         % store_errors.describe(exc, store))
        return 1
    except BrokenPipeError:
        # The reader is gone (``| head``): stop quietly; point stdout at
        # /dev/null so the interpreter's final flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    finally:
        store.close()
    LOG.debug('Dumped %d rows of %s', count, conf.table)
    return 0


if __name__ == '__main__':
    sys.exit(main())
