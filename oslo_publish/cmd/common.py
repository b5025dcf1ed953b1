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

"""What the host commands share: which database group they read.

A service keeps the tables oslo.publish captures in the oslo.db group of
its own choosing: ``[database]`` for most, ``[placement_database]`` for
placement, ``[api_database]`` for nova's API database. The commands read
``connection`` from the group named by ``--database-group``, else
``[oslo_publish] database_group`` (default ``database``).
"""

import re

from oslo_config import cfg
from oslo_db import options as db_options

from oslo_publish import options

_NAME = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')

database_group_cli_opt = cfg.StrOpt(
    'database-group', dest='cli_database_group',
    help='Configuration group whose connection option names the '
         'database (overrides [oslo_publish] database_group; e.g. '
         'placement_database).')


def register_cli_opts(conf):
    """Register ``[oslo_publish]`` and ``--database-group`` on ``conf``."""
    if options.GROUP not in conf:
        options.register_opts(conf)
    conf.register_cli_opt(database_group_cli_opt)


def database_group(conf):
    """The group name, checked: ``--database-group`` else the option."""
    name = conf.cli_database_group or conf.oslo_publish.database_group
    if not _NAME.match(name or ''):
        raise ValueError('--database-group / [oslo_publish] database_group '
                         '%r is not a configuration group name' % name)
    return name


def connection(conf):
    """``(group, url)``: the ``connection`` of the chosen group.

    The oslo.db options are registered in that group (after parsing, as
    the group is only known then); ``url`` is None when unset.
    """
    group = database_group(conf)
    if group not in conf or 'connection' not in conf[group]:
        conf.register_opts(db_options.database_opts, group)
    return group, conf[group].connection
