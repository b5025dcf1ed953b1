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

"""``oslo-publish-status``: where every stream of a database stands.

::

    oslo-publish-status --config-file /etc/nova/nova.conf

For each stream: the last published sequence number, the backlog
(committed entries the broker has not confirmed yet, numbered or not),
the age of the oldest of them, the number of delivered entries still
retained (``outbox_retention``) and, for ``capture = logical`` on
PostgreSQL, the bytes of WAL the stream's replication slot retains
(``-`` without a slot). ``--json`` prints one object per stream instead
of the table. Exit status 0; 1 when the middleware's tables
are missing or the database cannot be reached (one line on stderr
says which); 2 for a configuration error.
"""

import datetime
import json
import sys

from oslo_config import cfg
import sqlalchemy as sa

from oslo_publish.cmd import common
from oslo_publish.logcapture import pgoutput
from oslo_publish import outbox
from oslo_publish import relay

_HEADER = ('STREAM', 'LAST_SEQ', 'BACKLOG', 'OLDEST_PENDING_S',
           'DELIVERED_RETAINED', 'LOG_RETAINED_BYTES')
_KEYS = ('stream', 'last_seq', 'backlog', 'oldest_pending_s',
         'delivered_retained', 'log_retained_bytes')

_json_opt = cfg.BoolOpt('json', default=False,
                        help='Print a JSON list, one object per stream, '
                             'instead of the table.')


def collect(engine):
    """``[(stream, last_seq, backlog, oldest_age_s, retained, log_bytes)]``.

    ``oldest_age_s`` is None without backlog; ``log_bytes`` is None when
    the stream has no replication slot (session capture, not PostgreSQL).

    :raises LookupError: when the middleware's tables are missing.
    """
    inspector = sa.inspect(engine)
    missing = [t.name for t in (outbox.outbox, outbox.streams)
               if not inspector.has_table(t.name)]
    if missing:
        raise LookupError(', '.join(missing))
    o, s = outbox.outbox, outbox.streams
    now = datetime.datetime.now(datetime.timezone.utc)
    # Numbered but not confirmed by the broker is still backlog.
    pending = sa.case((o.c.published_at.is_(None), 1), else_=0)
    delivered = sa.case((o.c.published_at.isnot(None), 1), else_=0)
    oldest = sa.case((o.c.published_at.is_(None), o.c.committed_at),
                     else_=None)
    out = {}
    with engine.connect() as conn:
        for name, last_seq in conn.execute(sa.select(s.c.stream,
                                                     s.c.last_seq)):
            out[name] = [name, last_seq, 0, None, 0, None]
        for name, backlog, first, retained in conn.execute(
                sa.select(o.c.stream, sa.func.sum(pending),
                          sa.func.min(oldest), sa.func.sum(delivered))
                .group_by(o.c.stream)):
            row = out.setdefault(name, [name, 0, 0, None, 0, None])
            row[2] = int(backlog or 0)
            row[4] = int(retained or 0)
            if first is not None:
                row[3] = round((now - relay.as_utc(first))
                               .total_seconds(), 3)
        if engine.dialect.name == 'postgresql':
            _slot_retained(conn, out)
    return [tuple(out[name]) for name in sorted(out)]


def _slot_retained(conn, out):
    """Fill each stream's WAL retained by its slot (``capture = logical``)."""
    slots = dict((pgoutput.object_name(name), row)
                 for name, row in out.items())
    for slot, retained in conn.exec_driver_sql(
            'SELECT slot_name, pg_wal_lsn_diff(pg_current_wal_lsn(), '
            'confirmed_flush_lsn)::bigint FROM pg_replication_slots '
            "WHERE plugin = 'pgoutput'"):
        if slot in slots and retained is not None:
            slots[slot][5] = int(retained)


def _render(rows):
    lines = [_HEADER] + [(r[0], str(r[1]), str(r[2]),
                          '-' if r[3] is None else '%.3f' % r[3], str(r[4]),
                          '-' if r[5] is None else str(r[5]))
                         for r in rows]
    widths = [max(len(line[i]) for line in lines)
              for i in range(len(_HEADER))]
    return '\n'.join('  '.join(cell.ljust(w) for cell, w in
                               zip(line, widths)).rstrip()
                     for line in lines)


def main(argv=None, conf=None):
    """Entry point; returns the process exit status."""
    conf = conf or cfg.ConfigOpts()
    common.register_cli_opts(conf)
    conf.register_cli_opt(_json_opt)
    conf(sys.argv[1:] if argv is None else argv, project='oslo_publish')
    try:
        group, url = common.connection(conf)
    except ValueError as exc:
        print('oslo-publish-status: %s' % exc, file=sys.stderr)
        return 2
    if not url:
        print('oslo-publish-status: [%s] connection is not set' % group,
              file=sys.stderr)
        return 2
    engine = sa.create_engine(url)
    try:
        rows = collect(engine)
    except LookupError as exc:
        print('oslo-publish-status: the oslo.publish tables are missing '
              '(%s); run oslo-publish-manage --config-file FILE upgrade'
              % exc, file=sys.stderr)
        return 1
    except sa.exc.OperationalError as exc:
        print('oslo-publish-status: cannot reach the database: %s'
              % str(exc.orig).splitlines()[0], file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    if conf.json:
        print(json.dumps([dict(zip(_KEYS, row)) for row in rows],
                         indent=2))
    else:
        print(_render(rows))
    return 0


if __name__ == '__main__':
    sys.exit(main())
