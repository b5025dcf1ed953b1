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

"""One line for a state store that the read-only commands cannot read.

``consumer-status`` and ``consumer-dump`` read the state store named by
``[consumer_database] connection``. When that database cannot be reached,
or holds no consumer tables (a wrong URL, or ``consumer-manage upgrade``
never ran), they print :func:`describe`'s line instead of a traceback.
"""

import contextlib
import logging

from oslo_db import exception as db_exc
import sqlalchemy as sa
from sqlalchemy.engine import url as sa_url


def _safe(url):
    try:
        return sa_url.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: not a URL; show it as given
        return str(url)


def _first_line(exc):
    # oslo.db wraps SQLAlchemy's error, which wraps the driver's.
    for attr in ('inner_exception', 'orig'):
        exc = getattr(exc, attr, None) or exc
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


#: Loggers that would repeat, with a traceback, what the line says.
_QUIET = {'oslo_db.sqlalchemy.exc_filters': logging.ERROR,
          'alembic': logging.WARNING}


@contextlib.contextmanager
def quiet():
    """Silence oslo.db's "exception wrapped" and alembic's INFO lines."""
    saved = {}
    for name, level in _QUIET.items():
        logger = logging.getLogger(name)
        saved[name] = logger.level
        logger.setLevel(level)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _without_schema(store):
    """True when the store's database answers but was never upgraded."""
    with quiet():
        try:
            return store.current_revision() is None
        except Exception:  # noqa: unreachable; said by the caller's line
            return False


def describe(exc, store):
    """What to check, in one line, when ``exc`` comes from ``store``.

    :param store: the :class:`consumer.state.StateStore` that raised.
    :returns: the line (without the command's name), or None when
        ``exc`` is not a database error.
    """
    if not isinstance(exc, (db_exc.DBError, sa.exc.SQLAlchemyError)):
        return None
    where = _safe(store.url)
    # MySQL's "table doesn't exist" is no DBNonExistentTable in oslo.db:
    # ask the store whether it has a schema at all.
    if isinstance(exc, db_exc.DBNonExistentTable) or \
            _without_schema(store):
        return ('the state store at %s has no consumer tables: check '
                '[consumer_database] connection, or run consumer-manage '
                'upgrade' % where)
    return ('cannot read the state store at %s (%s): check that the '
            'database runs and [consumer_database] connection'
            % (where, _first_line(exc)))
