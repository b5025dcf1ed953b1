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

"""The sql poll source and the poll driver on every database."""

import datetime
import decimal

import sqlalchemy as sa

from consumer.drivers import poll
from consumer import service
from consumer import state as state_mod
from tests import base

_META = sa.MetaData()
HOSTS = sa.Table(
    'hosts', _META,
    sa.Column('region', sa.String(20), primary_key=True),
    sa.Column('id', sa.Integer, primary_key=True, autoincrement=False),
    sa.Column('name', sa.String(50)),
    sa.Column('capacity', sa.Numeric(10, 2)),
    sa.Column('seen_at', sa.DateTime),
)


def _rows(engine):
    with engine.connect() as conn:
        return {(r.region, r.id): dict(r._mapping)
                for r in conn.execute(sa.select(HOSTS))}


class _PollSQLTests(object):

    def setUp(self):
        super().setUp()
        _META.create_all(self.engine)
        with self.engine.begin() as conn:
            conn.execute(HOSTS.insert(), [
                {'region': r, 'id': i, 'name': '%s-%d' % (r, i),
                 'capacity': decimal.Decimal('%d.50' % i),
                 'seen_at': datetime.datetime(2026, 1, 1, 0, 0, i)}
                for r in ('east', 'west') for i in range(1, 6)])

    def test_keyset_pages_return_every_row_once(self):
        """Pages by composite primary key return each row exactly once."""
        source = poll.SQLSource(engine=self.engine, tables=['hosts'],
                                page_size=3)
        polled = source.get_all()['hosts']
        self.assertEqual(('region', 'id'), polled.pk)
        rows = list(polled.rows)
        self.assertEqual(10, len(rows))
        self.assertEqual(_rows(self.engine),
                         {(r['region'], r['id']): r for r in rows})
        keys = [(r['region'], r['id']) for r in rows]
        self.assertEqual(sorted(keys), keys)

    def test_poll_driver_mirrors_the_table(self):
        """The poll driver service converges on the table after writes."""
        self.conf.set_override('driver', 'poll', 'consumer')
        self.conf.set_override('connection', self.db.url, 'consumer_poll')
        self.conf.set_override('tables', ['hosts'], 'consumer_poll')
        self.conf.set_override('interval', 0.05, 'consumer_poll')
        self.conf.set_override('resync_backoff_min', 0.0, 'consumer')
        self.conf.set_override('inactivity_timeout', 30.0, 'consumer')
        state = state_mod.StateStore.from_url(
            'sqlite:///%s/state.sqlite' % self.tmpdir)
        self.addCleanup(state.close)
        consumer = service.Consumer(self.conf, state=state)
        consumer.start()
        self.addCleanup(consumer.stop)
        self.assertTrue(consumer.wait_synced(30))
        with self.engine.begin() as conn:
            conn.execute(HOSTS.update().where(HOSTS.c.id == 2).values(
                name='changed'))
            conn.execute(HOSTS.delete().where(HOSTS.c.id == 3))

        def converged():
            view = consumer.view()
            return {k: dict(v) for k, v in view.rows('hosts').items()} == \
                _rows(self.engine)
        base.wait_for(converged, 30, message='poll driver did not converge')


class TestPollSQLite(_PollSQLTests, base.BackendTestCase):
    BACKEND = 'sqlite'


class TestPollPostgreSQL(_PollSQLTests, base.BackendTestCase):
    BACKEND = 'postgresql'


class TestPollMySQL(_PollSQLTests, base.BackendTestCase):
    BACKEND = 'mysql'
