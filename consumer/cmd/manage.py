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


"""``consumer-manage``: the state store's schema (like cloudkitty-dbsync).

::

    consumer-manage --config-file consumer.conf upgrade [--revision REV]
    consumer-manage --config-file consumer.conf current

``upgrade`` creates or upgrades the state store in ``[consumer_database]
connection`` to the newest revision (safe to run again); ``current``
prints the revision it is at (``None`` when it was never upgraded).
"""

import sys

from oslo_config import cfg
from oslo_log import log

from consumer import options
from consumer import state

LOG = log.getLogger(__name__)


def _upgrade(conf):
    store = state.StateStore(conf)
    try:
        before = store.current_revision()
        store.upgrade(conf.command.revision)
        after = store.current_revision()
    finally:
        store.close()
    LOG.info('State store upgraded from %s to %s', before, after)
    print('state store at revision %s' % after)


def _current(conf):
    store = state.StateStore(conf)
    try:
        print(store.current_revision())
    finally:
        store.close()


def _add_parsers(subparsers):
    upgrade = subparsers.add_parser(
        'upgrade', help='Create or upgrade the state store schema.')
    upgrade.add_argument('--revision', default='head',
                         help='Target revision (default: head).')
    upgrade.set_defaults(func=_upgrade)
    current = subparsers.add_parser(
        'current', help='Print the schema revision of the state store.')
    current.set_defaults(func=_current)


def _conf(argv):
    conf = cfg.ConfigOpts()
    options.register_opts(conf)
    log.register_options(conf)
    # Logs go to stderr; stdout carries the command's output only.
    conf.set_default('use_stderr', True)
    conf.register_cli_opt(cfg.SubCommandOpt(
        'command', title='Commands', handler=_add_parsers))
    conf(argv, project='consumer', prog='consumer-manage')
    log.setup(conf, 'consumer')
    return conf


def main(argv=None):
    conf = _conf(sys.argv[1:] if argv is None else argv)
    conf.command.func(conf)
    return 0


if __name__ == '__main__':
    sys.exit(main())
