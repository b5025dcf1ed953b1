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


"""A tiny WSGI service for the pre-fork test (``gunicorn --preload``).

Imported once by the master, which calls :func:`oslo_publish.install`
before forking its workers, as a service with a preloaded app does.
Every ``POST /write`` commits one captured transaction (one inserted
row) and answers the worker's pid and the row id.

Environment: ``PREFORK_DB_URL`` (the host database), ``PREFORK_CONF``
(an oslo.config file with ``[DEFAULT]`` and ``[oslo_publish]``).
"""

import os

from oslo_config import cfg
from oslo_messaging import transport as om_transport
import sqlalchemy as sa
from sqlalchemy import orm

import oslo_publish
from oslo_publish import options

Base = orm.declarative_base()


class Item(Base):
    __tablename__ = 'items'
    id = sa.Column(sa.Integer, primary_key=True, autoincrement=False)
    name = sa.Column(sa.String(64), nullable=False)


CONF = cfg.ConfigOpts()
options.register_opts(CONF)
CONF.register_opts(om_transport._transport_opts)
CONF(['--config-file', os.environ['PREFORK_CONF']], project='prefork_app',
     default_config_files=[])
ENGINE = sa.create_engine(os.environ['PREFORK_DB_URL'])
SESSIONS = orm.sessionmaker(bind=ENGINE)
HANDLE = oslo_publish.install(CONF, SESSIONS, metadata=Base.metadata)


def app(environ, start_response):
    """Commit one row per request; answer ``<pid> <id>``."""
    if environ.get('REQUEST_METHOD') != 'POST':
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [b'ok %d\n' % os.getpid()]
    item_id = int(environ.get('QUERY_STRING', '').split('=', 1)[1])
    session = SESSIONS()
    try:
        session.add(Item(id=item_id, name='w%d' % os.getpid()))
        session.commit()
    finally:
        session.close()
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'%d %d\n' % (os.getpid(), item_id)]
