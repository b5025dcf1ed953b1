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

"""``consumer-status --config-file F [--json]``: each stream's status.

Reads the status table of the state store that a running ``consumer-sync``
writes every second: per stream its state, applied sequence number, lag,
whether it is synced, the last error and its counters (received,
applied, duplicates, rejected by reason, resyncs by cause, drift).

``synced=yes`` only when the record is fresh (the consumer runs), a
heartbeat or delta of the host was heard within twice
``[consumer] heartbeat_interval`` and everything up to it is applied
(:mod:`consumer.health`). For each stream that is not, one line on
stderr says what to check.

Exit status: 0 every stream synced, 1 some stream not synced, 2 nothing
to show (no status recorded, or the state store cannot be read: one line
on stderr says what to check).
"""

import json
import sys
import time

from oslo_config import cfg

from consumer import health as health_mod
from consumer.cmd import store_errors
from consumer import options
from consumer import state as state_mod

_FIXED = ('applied_seq', 'synced', 'lag_seconds')
_SKIP = ('buffered', 'pending_resync', 'last_heard_at', 'heard_seq')


def _conf(argv):
    conf = cfg.ConfigOpts()
    options.register_opts(conf)
    conf.register_cli_opt(cfg.BoolOpt('json', default=False,
                                      help='Print JSON lines.'))
    conf(argv, project='consumer')
    return conf


def _line(stream, status, health):
    counters = status.counters or {}
    lag = counters.get('lag_seconds')
    parts = ['stream=%s' % stream, 'state=%s' % status.state,
             'applied_seq=%s' % counters.get('applied_seq'),
             'lag=%s' % ('-' if lag is None else '%.3fs' % lag),
             'synced=%s' % ('yes' if health.synced else 'no'),
             'last_error=%s' % (status.last_error or '-')]
    extra = sorted('%s=%s' % (k, v) for k, v in counters.items()
                   if k not in _FIXED and k not in _SKIP)
    return ' '.join(parts + extra)


def main(argv=None):
    conf = _conf(sys.argv[1:] if argv is None else argv)
    store = state_mod.StateStore(conf)
    try:
        with store_errors.quiet():
            found = store.status()
    except Exception as exc:
        line = store_errors.describe(exc, store)
        if line is None:
            raise
        sys.stderr.write('consumer-status: %s\n' % line)
        return 2
    finally:
        store.close()
    if not found:
        sys.stdout.write('no stream status recorded\n')
        return 2
    now = time.time()
    all_synced = True
    for stream in sorted(found):
        status = found[stream]
        health = health_mod.assess(stream, status, now,
                                   conf.consumer.heartbeat_interval)
        all_synced = all_synced and health.synced
        if conf.json:
            record = {'stream': stream, 'state': status.state,
                      'last_error': status.last_error,
                      'updated_at': status.updated_at.isoformat()
                      if status.updated_at else None}
            record.update(status.counters or {})
            record.update(
                reported_synced=bool(record.get('synced')),
                synced=health.synced, reason=health.reason,
                status_age_seconds=_round(health.status_age),
                heard_age_seconds=_round(health.heard_age))
            sys.stdout.write(json.dumps(record, sort_keys=True) + '\n')
        else:
            sys.stdout.write(_line(stream, status, health) + '\n')
        if health.reason:
            sys.stderr.write('consumer-status: %s\n' % health.reason)
    return 0 if all_synced else 1


def _round(value):
    return None if value is None else round(value, 3)


if __name__ == '__main__':
    sys.exit(main())
