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


"""A host writer process of the chaos runner (:mod:`tools.chaos`).

::

    python -m tools.chaos_writer --db URL --stream S --seed N \\
        --index I --threads T --duration D --rate R [--capture logical]

Installs :func:`oslo_publish.install` on a sessionmaker with the outbox
and no relay of its own (``relay_in_process = false``: the standalone
relay publishes; with ``--capture logical`` it also reads the database's
log, and the writers' sessions capture nothing), then runs ``T`` threads
of random transactions for ``D`` seconds at about ``R`` transactions per
second each: ORM inserts,
updates and deletes, ORM bulk UPDATE and DELETE statements, primary-key
changes, rolled-back savepoints and rolled-back transactions. Every value
written by a change that is rolled back carries :data:`MARKER`, so the
runner can prove that none of it ever reached the bus or the mirror.
Prints one JSON line at the end: ``{"committed", "rolled_back",
"savepoints_rolled_back", "errors"}``.
"""

import argparse
import datetime
import decimal
import json
import random
import sys
import threading
import time

from oslo_config import cfg
from oslo_log import log
import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import exc as orm_exc

import oslo_publish
from oslo_publish import options
from oslo_publish import outbox

LOG = log.getLogger(__name__)

#: Text written by every change that is rolled back (never published).
MARKER = 'ROLLEDBACK'
#: Integer written by rolled-back changes of integer columns.
MARKER_INT = -424242

Base = orm.declarative_base()


class Item(Base):
    __tablename__ = 'chaos_items'
    __table_args__ = {'mysql_engine': 'InnoDB'}
    id = sa.Column(sa.Integer, primary_key=True, autoincrement=False)
    name = sa.Column(sa.String(64), nullable=False)
    n = sa.Column(sa.Integer, nullable=False, default=0)
    price = sa.Column(sa.Numeric(10, 2))
    seen = sa.Column(outbox.Timestamp)


class Pair(Base):
    __tablename__ = 'chaos_pairs'
    __table_args__ = {'mysql_engine': 'InnoDB'}
    a = sa.Column(sa.Integer, primary_key=True, autoincrement=False)
    b = sa.Column(sa.String(32), primary_key=True)
    v = sa.Column(sa.Integer)


TABLES = ('chaos_items', 'chaos_pairs')
PRELOAD_ITEMS = 150
#: Ids of inserted items: INDEX_BASE * (writer index + 1) + a counter.
INDEX_BASE = 10 ** 6


def preload(engine):
    """Initial rows, written before any capture (the snapshot has them)."""
    with engine.begin() as conn:
        conn.execute(Item.__table__.insert(), [
            {'id': i, 'name': 'pre-%d' % i, 'n': 0,
             'price': decimal.Decimal('%d.25' % i),
             'seen': datetime.datetime(2026, 1, 1, 0, 0, 0, i)}
            for i in range(1, PRELOAD_ITEMS + 1)])
        conn.execute(Pair.__table__.insert(), [
            {'a': a, 'b': 'k%d' % b, 'v': 0}
            for a in range(1, 11) for b in range(1, 4)])


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


class Writer(object):
    """Random transactions of one writer process."""

    def __init__(self, maker, index, seed):
        self.maker = maker
        self.index = index
        self.seed = seed
        self.lock = threading.Lock()
        self.counts = {'committed': 0, 'rolled_back': 0,
                       'savepoints_rolled_back': 0, 'errors': 0,
                       'unexpected': 0, 'error_kinds': {}}
        self._next = INDEX_BASE * (index + 1)

    def _count(self, name):
        with self.lock:
            self.counts[name] += 1

    def _new_id(self):
        with self.lock:
            self._next += 1
            return self._next

    # ------------------------------------------------------------ picks

    @staticmethod
    def _pick(session, model, rng):
        count = session.scalar(sa.select(sa.func.count()).select_from(model))
        if not count:
            return None
        return session.scalars(sa.select(model).order_by(
            *model.__table__.primary_key.columns).offset(
                rng.randrange(count)).limit(1)).first()

    # ------------------------------------------------------------ changes

    def _insert(self, session, rng, marker=False):
        ident = self._new_id()
        session.add(Item(
            id=ident, name=(MARKER if marker else 'ins') + '-%d' % ident,
            n=MARKER_INT if marker else 0,
            price=decimal.Decimal(rng.randrange(1, 10 ** 6)).scaleb(-2),
            seen=_now()))

    def _update(self, session, rng, marker=False):
        item = self._pick(session, Item, rng)
        if item is None:
            return
        item.n = MARKER_INT if marker else item.n + 1
        item.name = (MARKER if marker else 'upd') + '-%d' % rng.randrange(
            10 ** 6)
        item.seen = _now()

    def _delete(self, session, rng):
        item = self._pick(session, Item, rng)
        if item is not None:
            session.delete(item)

    def _bulk_update(self, session, rng, marker=False):
        low = self._pick(session, Item, rng)
        if low is None:
            return
        values = {'n': Item.n + 1, 'name': 'bulk-%d' % rng.randrange(100)}
        if marker:
            values = {'n': MARKER_INT, 'name': MARKER + '-bulk'}
        session.execute(sa.update(Item).where(
            Item.id.between(low.id, low.id + 4)).values(**values))

    def _bulk_delete(self, session, rng):
        low = self._pick(session, Item, rng)
        if low is not None:
            session.execute(sa.delete(Item).where(
                Item.id.between(low.id, low.id + 2)))

    def _pair(self, session, rng, marker=False):
        a, b = rng.randint(1, 12), 'k%d' % rng.randint(1, 5)
        pair = session.get(Pair, (a, b))
        if marker:
            if pair is None:
                session.add(Pair(a=a, b=MARKER + '-%d' % rng.randrange(100),
                                 v=MARKER_INT))
            else:
                pair.v = MARKER_INT
        elif pair is None:
            session.add(Pair(a=a, b=b, v=0))
        elif rng.random() < 0.25:
            session.delete(pair)
        else:
            pair.v = (pair.v or 0) + 1

    def _change_key(self, session, rng):
        pair = self._pick(session, Pair, rng)
        if pair is not None:
            pair.b = 'm%d' % rng.randrange(1000)

    def _phantoms(self, session, rng):
        """Marked changes of every kind, to be rolled back."""
        self._insert(session, rng, marker=True)
        self._update(session, rng, marker=True)
        self._pair(session, rng, marker=True)
        if rng.random() < 0.5:
            self._bulk_update(session, rng, marker=True)
        if rng.random() < 0.3:
            self._delete(session, rng)
        session.flush()

    # ------------------------------------------------------------ runs

    _COMMITTED = (
        (0.24, '_insert'), (0.20, '_update'), (0.08, '_delete'),
        (0.07, '_bulk_update'), (0.04, '_bulk_delete'), (0.13, '_pair'),
        (0.06, '_change_key'))

    def one(self, rng):
        """Run one random transaction."""
        session = self.maker()
        try:
            roll = rng.random()
            if roll < 0.09:
                self._phantoms(session, rng)
                session.rollback()
                self._count('rolled_back')
                return
            if roll < 0.18:
                self._update(session, rng)
                nested = session.begin_nested()
                self._phantoms(session, rng)
                nested.rollback()
                self._count('savepoints_rolled_back')
                self._pair(session, rng)
            else:
                for _ in range(rng.randint(1, 3)):
                    self._weighted(session, rng)
            session.commit()
            self._count('committed')
        except (sa.exc.DBAPIError, orm_exc.StaleDataError,
                orm_exc.ObjectDeletedError) as exc:
            # Deadlocks, lock timeouts, racing keys, a row another
            # writer deleted under an ORM update or refresh: rolled back.
            session.rollback()
            self._failed(exc)
            LOG.debug('chaos transaction failed: %s', exc)
        finally:
            session.close()

    def _failed(self, exc):
        """Count a rolled-back failure, by kind (the runner prints them)."""
        kind = type(exc).__name__
        if isinstance(exc, sa.exc.DBAPIError):
            kind = type(exc.orig).__name__ if exc.orig is not None else kind
            code = getattr(exc.orig, 'args', (None,))[:1]
            if code and isinstance(code[0], int):
                kind = '%s(%d)' % (kind, code[0])
        with self.lock:
            self.counts['errors'] += 1
            kinds = self.counts.setdefault('error_kinds', {})
            kinds[kind] = kinds.get(kind, 0) + 1

    def _weighted(self, session, rng):
        roll = rng.random() * sum(w for w, _ in self._COMMITTED)
        for weight, name in self._COMMITTED:
            roll -= weight
            if roll <= 0:
                return getattr(self, name)(session, rng)
        return self._insert(session, rng)

    def run(self, threads, duration, rate):
        stop_at = time.monotonic() + duration
        workers = [threading.Thread(target=self._loop,
                                    args=(n, stop_at, rate), daemon=True)
                   for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    def _loop(self, n, stop_at, rate):
        rng = random.Random('%s-%d-%d' % (self.seed, self.index, n))
        interval = 1.0 / rate if rate > 0 else 0.0
        next_at = time.monotonic()
        while time.monotonic() < stop_at:
            try:
                self.one(rng)
            except Exception as exc:  # noqa: the thread must go on
                # An error of another kind used to end the thread in
                # silence: the run then committed a fraction of its
                # transactions. Counted and shown by the runner.
                LOG.exception('chaos writer %d thread %d: transaction '
                              'failed', self.index, n)
                self._failed(exc)
                with self.lock:
                    self.counts['unexpected'] += 1
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()


def make_conf(stream, capture='session'):
    conf = cfg.ConfigOpts()
    options.register_opts(conf)
    conf([], project='chaos_writer', default_config_files=[])
    for name, value in (('tables', list(TABLES)), ('stream', stream),
                        ('relay_in_process', False),
                        ('snapshot_server', False),
                        ('capture', capture)):
        conf.set_override(name, value, 'oslo_publish')
    return conf


def main(argv=None):
    parser = argparse.ArgumentParser(prog='chaos_writer')
    parser.add_argument('--db', required=True)
    parser.add_argument('--stream', required=True)
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--index', type=int, default=0)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--duration', type=float, default=10.0)
    parser.add_argument('--rate', type=float, default=15.0)
    parser.add_argument('--capture', choices=('session', 'logical'),
                        default='session')
    args = parser.parse_args(argv)
    engine = sa.create_engine(args.db, pool_size=args.threads + 2)
    maker = orm.sessionmaker(bind=engine)
    handle = oslo_publish.install(make_conf(args.stream, args.capture),
                                  maker, metadata=Base.metadata)
    writer = Writer(maker, args.index, args.seed)
    try:
        writer.run(args.threads, args.duration, args.rate)
    finally:
        handle.stop()
        engine.dispose()
    sys.stdout.write(json.dumps(writer.counts) + '\n')
    sys.stdout.flush()
    return 0


if __name__ == '__main__':
    sys.exit(main())
