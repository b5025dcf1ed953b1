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

"""The outbox entry's INSERT as driver SQL writes what Core writes."""

import datetime

import sqlalchemy as sa
from sqlalchemy import orm

from oslo_publish import outbox
from tests import base


class _SinkTests(object):

    WHEN = datetime.datetime(2026, 3, 1, 12, 30, 45, 123456)

    def _stage(self, sink, txid, engine=None):
        statements = []

        def note(conn, cursor, statement, *args):
            statements.append(statement)
        engine = engine or self.engine
        sa.event.listen(engine, 'before_cursor_execute', note)
        try:
            with orm.Session(engine) as session:
                sink.stage(session, txid, self.WHEN.replace(
                    tzinfo=datetime.timezone.utc),
                    [{'table': 'items', 'op': 'insert', 'row': {
                        'id': 1, 'name': '100% "x"'}}],
                    {'items': {'pk': ['id'], 'version': 'v'}})
                session.commit()
        finally:
            sa.event.remove(engine, 'before_cursor_execute', note)
        return [s for s in statements if 'oslo_publish_outbox' in s]

    def _row(self, txid):
        with self.engine.connect() as conn:
            return conn.execute(sa.select(
                outbox.outbox.c.stream, outbox.outbox.c.txid,
                outbox.outbox.c.committed_at, outbox.outbox.c.payload,
                outbox.outbox.c.seq, outbox.outbox.c.published_at).where(
                outbox.outbox.c.txid == txid)).one()

    def test_driver_sql_row_equals_the_core_row(self):
        """Same stream, txid, time (microseconds), payload as Core's."""
        outbox.metadata.create_all(self.engine)
        sink = outbox.OutboxSink('s')
        self.assertEqual(1, len(self._stage(sink, 'fast')))
        core = outbox.OutboxSink('s')
        core._driver_sql = lambda conn, insert: None
        self._stage(core, 'core')
        fast, slow = self._row('fast'), self._row('core')
        self.assertEqual(('s', 'fast', self.WHEN), tuple(fast[:3]))
        self.assertEqual(tuple(slow[2:]), tuple(fast[2:]))
        self.assertIn('"name":"100% \\"x\\""', fast.payload)
        self.assertIsNotNone(
            sink._driver_cache[(self.engine.dialect, True)])

    def test_schema_translate_map_takes_the_core_statement(self):
        """A translated schema is honoured (Core), not bypassed."""
        outbox.metadata.create_all(self.engine)
        translated = self.engine.execution_options(
            schema_translate_map={'elsewhere': None})
        sink = outbox.OutboxSink('s')
        with orm.Session(translated) as session:
            conn = session.connection()
            self.assertIsNone(sink._driver_sql(conn, outbox._INSERT))
        self._stage(sink, 'translated', engine=translated)
        self.assertEqual('translated', self._row('translated').txid)


class TestOutboxSinkPostgreSQL(_SinkTests, base.BackendTestCase):
    BACKEND = 'postgresql'

    def test_notify_variant_is_driver_sql_with_the_channel(self):
        """The INSERT ... FROM pg_notify(channel) keeps its channel."""
        from oslo_publish.relay import wake
        outbox.metadata.create_all(self.engine)
        sink = outbox.OutboxSink('s', notify=True)
        (statement,) = self._stage(sink, 'notified')
        self.assertIn("pg_notify('%s'" % wake.channel('s'), statement)
        self.assertEqual('notified', self._row('notified').txid)


class TestOutboxSinkMySQL(_SinkTests, base.BackendTestCase):
    BACKEND = 'mysql'


class TestOutboxSinkSQLite(base.BackendTestCase):
    BACKEND = 'sqlite'

    def test_sqlite_keeps_the_core_statement(self):
        """qmark drivers (and bind processors) keep Core's INSERT."""
        sink = outbox.OutboxSink('s')
        with orm.Session(self.engine) as session:
            self.assertIsNone(
                sink._driver_sql(session.connection(), outbox._INSERT))
