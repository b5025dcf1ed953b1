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

"""The demo's inputs, checked before anything starts.

Every bad input ends in :class:`DemoError`: one line saying what to fix,
exit status 2, never a traceback. Database URLs are normalised so the
forms the help shows work with the drivers that are installed
(``postgresql://`` and ``mysql://`` pick psycopg/psycopg2 and
MySQLdb/PyMySQL).
"""

import argparse
import importlib.util
import os
import socket

import sqlalchemy as sa
from sqlalchemy.engine import url as sa_url

#: Drivers tried, in order, for a URL that names only the database.
_DRIVERS = {
    'postgresql': (('psycopg', 'psycopg'), ('psycopg2', 'psycopg2')),
    'mysql': (('mysqldb', 'MySQLdb'), ('pymysql', 'pymysql')),
    'mariadb': (('mysqldb', 'MySQLdb'), ('pymysql', 'pymysql')),
}

#: Seconds the broker check may take.
BROKER_TIMEOUT = 5.0


class DemoError(Exception):
    """A failure the user can fix; printed as one line, no traceback."""


def safe_url(url):
    """``url`` with its password hidden, for messages."""
    try:
        return sa_url.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: broad - only used for messages
        return '<url>'


def database_url(url, option):
    """``url`` parsed, checked and given an installed driver.

    :param option: the command-line flag, named in the message.
    :returns: the URL string to use.
    :raises DemoError: not a database URL, unknown database or driver.
    """
    try:
        parsed = sa_url.make_url(url)
    except Exception:  # noqa: ArgumentError and friends
        raise DemoError('%s %r is not a database URL; use e.g. '
                        'sqlite:////path/demo.sqlite, '
                        'postgresql://user@host/db or '
                        'mysql+pymysql://root@127.0.0.1/demo'
                        % (option, url)) from None
    backend = parsed.get_backend_name()
    if parsed.drivername in _DRIVERS:
        for driver, module in _DRIVERS[parsed.drivername]:
            if importlib.util.find_spec(module) is not None:
                parsed = parsed.set(drivername='%s+%s' % (backend, driver))
                break
        else:
            raise DemoError('%s: no %s driver is installed; install '
                            '%s' % (option, backend, ' or '.join(
                                m for _d, m in _DRIVERS[backend])))
    try:
        parsed.get_dialect()
    except Exception as exc:  # noqa: NoSuchModuleError, ImportError
        raise DemoError('%s %s: unsupported database or driver (%s)'
                        % (option, safe_url(url), _first_line(exc))) \
            from None
    return parsed.render_as_string(hide_password=False)


def engine(url, label):
    """An engine on ``url`` that has connected once."""
    eng = sa.create_engine(url)
    if eng.dialect.name == 'sqlite':
        @sa.event.listens_for(eng, 'connect')
        def _wal(dbapi_conn, record):
            cur = dbapi_conn.cursor()
            cur.execute('PRAGMA journal_mode=WAL')
            cur.execute('PRAGMA busy_timeout=30000')
            cur.close()
    try:
        with eng.connect():
            pass
    except Exception as exc:  # noqa: DBAPIError, driver errors
        eng.dispose()
        orig = getattr(exc, 'orig', None) or exc
        raise DemoError('cannot connect to the %s database at %s (%s): '
                        'check that it runs and the URL is right'
                        % (label, safe_url(url), _first_line(orig))) \
            from None
    return eng


def data_dir(path):
    """Create ``path`` and check it is writable; the absolute path."""
    path = os.path.abspath(path)
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, '.oslo-publish-demo-write-test')
        with open(probe, 'w'):
            pass
        os.unlink(probe)
    except OSError as exc:
        raise DemoError('--data-dir %s is not a writable directory (%s)'
                        % (path, exc.strerror or exc)) from None
    return path


def _number(kind, convert, minimum, inclusive):
    def check(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError('%r is not %s' % (text, kind))
        if value < minimum or (value == minimum and not inclusive) or \
                value != value:
            raise argparse.ArgumentTypeError('%r is not %s' % (text, kind))
        return value
    check.__name__ = kind
    return check


#: argparse types: seconds >= 0, a rate > 0, a count >= 1.
seconds = _number('a number of seconds >= 0', float, 0, True)
positive = _number('a number > 0', float, 0, False)
count = _number('a whole number >= 1', int, 1, True)


def transport_url(url):
    """Refuse a transport URL whose scheme no installed driver serves."""
    scheme = url.split('://', 1)[0] if '://' in url else ''
    try:
        from importlib import metadata
        names = {ep.name for ep in metadata.entry_points(
            group='oslo.messaging.drivers')}
    except Exception:  # noqa: cannot tell; oslo.messaging will say
        return
    if scheme not in names:
        raise DemoError('--transport-url %s: no oslo.messaging driver for '
                        '%r; use fake:// (in-process) or '
                        'rabbit://user:password@host:5672/'
                        % (url.split('@')[-1], scheme))


def broker(url):
    """Connect and log in to the broker of a rabbit:// URL, once."""
    if not url.startswith(('rabbit://', 'kombu://', 'amqp://')):
        return
    import kombu
    first = url.split('://', 1)[1].split(',')[0]
    parsed = sa_url.make_url('x://' + first)
    host, port = parsed.host or '127.0.0.1', parsed.port or 5672
    try:
        socket.create_connection((host, port), timeout=BROKER_TIMEOUT).close()
    except OSError as exc:
        raise DemoError(
            'cannot reach the message broker at %s:%s (%s): check that '
            'RabbitMQ is running and --transport-url is right'
            % (host, port, exc.strerror or exc)) from None
    conn = kombu.Connection('amqp://' + first, connect_timeout=BROKER_TIMEOUT)
    try:
        conn.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT)
    except Exception as exc:  # noqa: AccessRefused, OperationalError
        raise DemoError('the message broker at %s:%s refused the login '
                        '(%s): check the user, password and virtual host '
                        'in --transport-url'
                        % (host, port, _first_line(exc))) from None
    finally:
        conn.release()


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
