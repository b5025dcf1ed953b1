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
Exit status 0 when every stream is synced, 1 otherwise, 2 when there is
nothing to show.
"""

import json
import sys

from oslo_config import cfg

from consumer import options
from consumer import state as state_mod

_FIXED = ('applied_seq', 'synced', 'lag_seconds')
_SKIP = ('buffered', 'pending_resync')


def _conf(argv):
    conf = cfg.ConfigOpts()
    options.register_opts(conf)
    conf.register_cli_opt(cfg.BoolOpt('json', default=False,
                                      help='Print JSON lines.'))
    conf(argv, project='consumer')
    return conf


def _line(stream, status):
    counters = status.counters or {}
    lag = counters.get('lag_seconds')
    parts = ['stream=%s' % stream, 'state=%s' % status.state,
             'applied_seq=%s' % counters.get('applied_seq'),
             'lag=%s' % ('-' if lag is None else '%.3fs' % lag),
             'synced=%s' % ('yes' if counters.get('synced') else 'no'),
             'last_error=%s' % (status.last_error or '-')]
    extra = sorted('%s=%s' % (k, v) for k, v in counters.items()
                   if k not in _FIXED and k not in _SKIP)
    return ' '.join(parts + extra)


def main(argv=None):
    conf = _conf(sys.argv[1:] if argv is None else argv)
    store = state_mod.StateStore(conf)
    try:
        found = store.status()
    finally:
        store.close()
    if not found:
        sys.stdout.write('no stream status recorded\n')
        return 2
    for stream in sorted(found):
        status = found[stream]
        if conf.json:
            record = {'stream': stream, 'state': status.state,
                      'last_error': status.last_error,
                      'updated_at': status.updated_at.isoformat()
                      if status.updated_at else None}
            record.update(status.counters or {})
            sys.stdout.write(json.dumps(record, sort_keys=True) + '\n')
        else:
            sys.stdout.write(_line(stream, status) + '\n')
    synced = all((s.counters or {}).get('synced') for s in found.values())
    return 0 if synced else 1


if __name__ == '__main__':
    sys.exit(main())
