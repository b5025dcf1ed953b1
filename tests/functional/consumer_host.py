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

"""A real host for the consumer's end-to-end tests, in its own process.

``python -m tests.functional.consumer_host --db URL --transport-url URL
--exchange X --stream S --topic T [--signing-key K] [--page-size N]``
creates the tables ``items`` and ``pairs`` (composite key) and the
outbox, calls
:func:`oslo_publish.install` on a sessionmaker (relay and snapshot server
in process, heartbeat every 0.2 s) and then obeys JSON commands, one per
line on stdin, answering one JSON line each on stdout:

``{"cmd": "preload", "rows": N}``
    insert N items (100 per transaction); answers when committed.
``{"cmd": "write", "tx": N, "writers": W, "seed": S}``
    start W threads running N random transactions in all (inserts,
    updates, deletes, composite-key rows, ~10% rolled back); answers at
    once.
``{"cmd": "paced", "tps": R, "seconds": S}``
    one thread commits R transactions a second for S seconds, each
    setting ``pings.ts`` to the wall time (latency benchmark); answers at
    once.
``{"cmd": "wait"}``
    wait for the writers; answers ``{"committed": c, "rolled_back": r}``.
``{"cmd": "idle"}``
    answers once the relay has published every committed entry.
``{"cmd": "raw", "sql": "UPDATE ..."}``
    run SQL outside the captured sessions (what capture cannot see).
``{"cmd": "quit"}``
    stops the middleware and exits.

The first line it prints is ``{"ready": true}``.

``CONSUMER_HOST_CAPTURE=logical`` runs the host with ``[oslo_publish]
capture = logical`` (PostgreSQL logical decoding: the database must run
with ``wal_level = logical``; MariaDB: a row binlog with full metadata);
the reader's setup (publication and slot) runs before install, and
``idle`` also waits for the log reader to catch up.

``CONSUMER_HOST_SCHEMA`` selects the code's model of ``items``: ``1``
(default), ``2`` (adds ``zone``, server default ``'nova'``) or ``3``
(``zone`` and no ``seen``), for the schema change tests; the database
itself is migrated by the test (:mod:`tests.functional.test_schema_change`).
"""

import argparse
import datetime
import decimal
import json
import os
import random
import sys
import threading

from oslo_config import cfg
import sqlalchemy as sa
from sqlalchemy import orm

import oslo_publish
from oslo_publish import migration

Base = orm.declarative_base()
SCHEMA = int(os.environ.get('CONSUMER_HOST_SCHEMA', '1'))
CAPTURE = os.environ.get('CONSUMER_HOST_CAPTURE', 'session')


class Item(Base):
    __tablename__ = 'items'
    __table_args__ = {'mysql_engine': 'InnoDB'}
    id = sa.Column(sa.Integer, primary_key=True, autoincrement=False)
    name = sa.Column(sa.String(64), nullable=False)
    n = sa.Column(sa.Integer, nullable=False, default=0)
    price = sa.Column(sa.Numeric(10, 2))
    if SCHEMA < 3:
        seen = sa.Column(sa.DateTime)
    if SCHEMA >= 2:
        zone = sa.Column(sa.String(16), nullable=False,
                         server_default='nova')


def _item(**values):
    """An Item of this process's model (columns it lacks are left out)."""
    return Item(**{k: v for k, v in values.items() if hasattr(Item, k)})


class Pair(Base):
    __tablename__ = 'pairs'
    __table_args__ = {'mysql_engine': 'InnoDB'}
    a = sa.Column(sa.Integer, primary_key=True, autoincrement=False)
    b = sa.Column(sa.String(32), primary_key=True)
    v = sa.Column(sa.Integer)


class Ping(Base):
    """Written by the paced workload: ``ts`` is the wall time of the write."""

    __tablename__ = 'pings'
    __table_args__ = {'mysql_engine': 'InnoDB'}
    id = sa.Column(sa.Integer, primary_key=True, autoincrement=False)
    ts = sa.Column(sa.Float(53), nullable=False)


TABLES = ('items', 'pairs', 'pings')


def _say(**data):
    sys.stdout.write(json.dumps(data) + '\n')
    sys.stdout.flush()


class Workload(object):

    def __init__(self, maker):
        self.maker = maker
        self._lock = threading.Lock()
        self._next_id = 1
        self.committed = 0
        self.rolled_back = 0
        self._threads = []

    def continue_ids(self):
        """Continue after the largest id (a restarted host process)."""
        with self.maker() as session:
            top = session.query(sa.func.max(Item.id)).scalar() or 0
        self._next_id = max(self._next_id, top + 1)

    def _new_id(self):
        with self._lock:
            ident = self._next_id
            self._next_id += 1
            return ident

    def preload(self, count):
        done = 0
        while done < count:
            with self.maker.begin() as session:
                for _ in range(min(100, count - done)):
                    ident = self._new_id()
                    session.add(_item(
                        id=ident, name='item-%d' % ident, n=0,
                        price=decimal.Decimal('%d.25' % ident),
                        seen=datetime.datetime(2026, 1, 1)))
                    done += 1

    def _one(self, session, rng):
        roll = rng.random()
        top = max(self._next_id - 1, 1)
        if roll < 0.3:
            ident = self._new_id()
            session.add(_item(id=ident, name='w-%d' % ident, n=0,
                              price=decimal.Decimal('1.50'),
                              seen=datetime.datetime(2026, 2, 1, 1, 2, 3),
                              zone='z%d' % (ident % 3)))
        elif roll < 0.65:
            item = session.get(Item, rng.randint(1, top))
            if item is not None:
                item.n += 1
                item.name = 'u-%d' % rng.randint(0, 10 ** 6)
        elif roll < 0.8:
            item = session.get(Item, rng.randint(1, top))
            if item is not None:
                session.delete(item)
        else:
            a, b = rng.randint(1, 20), 'k%d' % rng.randint(1, 5)
            pair = session.get(Pair, (a, b))
            if pair is None:
                session.add(Pair(a=a, b=b, v=0))
            elif rng.random() < 0.3:
                session.delete(pair)
            else:
                pair.v += 1

    def _writer(self, count, seed):
        rng = random.Random(seed)
        for _ in range(count):
            for _attempt in range(20):
                session = self.maker()
                try:
                    for _op in range(rng.randint(1, 3)):
                        self._one(session, rng)
                    if rng.random() < 0.1:
                        session.rollback()
                        with self._lock:
                            self.rolled_back += 1
                    else:
                        session.commit()
                        with self._lock:
                            self.committed += 1
                    break
                except (sa.exc.OperationalError, sa.exc.IntegrityError,
                        orm.exc.StaleDataError):
                    # Deadlock, racing insert, or a row another writer
                    # deleted under this one's UPDATE: retry.
                    session.rollback()
                finally:
                    session.close()

    def _paced(self, tps, seconds):
        import time
        start = time.monotonic()
        for i in range(int(tps * seconds)):
            delay = start + i / float(tps) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with self.maker.begin() as session:
                ping = session.get(Ping, i % 100)
                if ping is None:
                    session.add(Ping(id=i % 100, ts=time.time()))
                else:
                    ping.ts = time.time()
            with self._lock:
                self.committed += 1

    def paced(self, tps, seconds):
        thread = threading.Thread(target=self._paced, args=(tps, seconds),
                                  daemon=True)
        thread.start()
        self._threads.append(thread)

    def start(self, count, writers, seed):
        per = max(count // writers, 1)
        for i in range(writers):
            thread = threading.Thread(target=self._writer,
                                      args=(per, seed * 100 + i),
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    def wait(self):
        for thread in self._threads:
            thread.join()
        self._threads = []


def _conf(args):
    from oslo_messaging import opts as messaging_opts
    from oslo_messaging import transport
    conf = cfg.ConfigOpts()
    conf.register_opts(transport._transport_opts)
    for group, opts in messaging_opts.list_opts():
        if group == 'oslo_messaging_rabbit':
            conf.register_opts(opts, group=group)
    oslo_publish.options.register_opts(conf)
    conf([], project='consumer_host', default_config_files=[])
    conf.set_override('transport_url', args.transport_url)
    conf.set_override('control_exchange', args.exchange)
    conf.set_override('amqp_durable_queues', True, 'oslo_messaging_rabbit')
    conf.set_override('rabbit_interval_max', 2, 'oslo_messaging_rabbit')
    for name, value in (('tables', list(TABLES)), ('stream', args.stream),
                        ('topics', [args.topic]),
                        ('heartbeat_interval', 0.2),
                        ('relay_poll_interval', 0.05),
                        ('snapshot_page_size', args.page_size),
                        ('signing_key', args.signing_key),
                        ('capture', CAPTURE)):
        conf.set_override(name, value, 'oslo_publish')
    return conf


def _idle(engine, handle):
    if CAPTURE == 'logical' and engine.dialect.name == 'postgresql':
        from oslo_publish.logcapture import pgoutput
        pgoutput.catch_up(engine, handle.stream, 60)
    elif CAPTURE == 'logical':
        from oslo_publish.logcapture import binlog
        binlog.catch_up(engine, handle.stream, handle._conf, handle.tables,
                        60)
    return handle.relay.wait_drained(60)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument('--db', required=True)
    parser.add_argument('--transport-url', required=True)
    parser.add_argument('--exchange', required=True)
    parser.add_argument('--stream', required=True)
    parser.add_argument('--topic', required=True)
    parser.add_argument('--signing-key')
    parser.add_argument('--page-size', type=int, default=50)
    args = parser.parse_args(argv)
    engine = sa.create_engine(args.db)
    Base.metadata.create_all(engine)
    migration.upgrade(engine)
    conf = _conf(args)
    maker = orm.sessionmaker(bind=engine)
    if CAPTURE == 'logical':
        from oslo_publish import logcapture
        logcapture.reader_class(engine.dialect.name).setup(
            conf, engine, oslo_publish.resolve_tables(
                conf, Base.metadata, engine), args.stream)
    handle = oslo_publish.install(conf, maker, metadata=Base.metadata)
    workload = Workload(maker)
    workload.continue_ids()
    _say(ready=True)
    for line in sys.stdin:
        command = json.loads(line)
        cmd = command['cmd']
        if cmd == 'preload':
            workload.preload(command['rows'])
            _say(ok=cmd)
        elif cmd == 'write':
            workload.start(command['tx'], command.get('writers', 1),
                           command.get('seed', 0))
            _say(ok=cmd)
        elif cmd == 'paced':
            workload.paced(command['tps'], command['seconds'])
            _say(ok=cmd)
        elif cmd == 'wait':
            workload.wait()
            _say(ok=cmd, committed=workload.committed,
                 rolled_back=workload.rolled_back)
        elif cmd == 'raw':
            with engine.begin() as conn:
                count = conn.exec_driver_sql(command['sql']).rowcount
            _say(ok=cmd, rowcount=count)
        elif cmd == 'idle':
            _say(ok=cmd, idle=_idle(engine, handle))
        elif cmd == 'quit':
            break
    handle.stop()
    engine.dispose()
    _say(ok='quit')
    return 0


if __name__ == '__main__':
    sys.exit(main())
