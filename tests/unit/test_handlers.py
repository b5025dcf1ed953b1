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

import threading

import fixtures

from consumer import cache
from consumer import exceptions
from consumer import handlers
from consumer import metrics
from oslo_publish import wire
from tests import base


class Recorder(handlers.ChangeHandler):
    """Records every call; optionally waits on a gate before each one."""

    def __init__(self, gate=None, tables=None):
        super().__init__()
        self.calls = []
        self.gate = gate
        self.entered = threading.Event()
        if tables is not None:
            self.tables = tables

    def _record(self, *call):
        self.entered.set()
        if self.gate is not None:
            self.gate.wait()
        self.calls.append(call)

    def on_add(self, table, key, row):
        self._record('add', table, key, dict(row))

    def on_update(self, table, key, before, after):
        self._record('update', table, key, dict(before), dict(after))

    def on_delete(self, table, key, row):
        self._record('delete', table, key, dict(row))


class Failing(handlers.ChangeHandler):

    def on_add(self, table, key, row):
        raise RuntimeError('handler bug')


def _events(n, table='t'):
    return [cache.Event(table, cache.ADD, (i,), None, {'id': i})
            for i in range(n)]


class TestDispatcher(base.TestCase):

    def setUp(self):
        super().setUp()
        self.metrics = metrics.ConsumerMetrics()
        self.dispatcher = handlers.Dispatcher(self.metrics, queue_size=5)
        self.addCleanup(self.dispatcher.stop, 5.0)

    def test_delivers_each_kind_in_order(self):
        """Add, update and delete events reach their methods in order."""
        recorder = Recorder()
        self.dispatcher.add('rec', recorder)
        c = cache.Cache()
        events = c.apply([
            wire.Change('t', wire.INSERT, (1,), {'id': 1, 'v': 1}, None, ()),
            wire.Change('t', wire.UPDATE, (1,), {'id': 1, 'v': 2},
                        {'v': 1}, ('v',)),
            wire.Change('t', wire.DELETE, (1,), None, {'id': 1}, ())])
        self.dispatcher.dispatch(events)
        self.assertTrue(self.dispatcher.wait_idle(10))
        self.assertEqual([
            ('add', 't', (1,), {'id': 1, 'v': 1}),
            ('update', 't', (1,), {'id': 1, 'v': 1}, {'id': 1, 'v': 2}),
            ('delete', 't', (1,), {'id': 1, 'v': 2})], recorder.calls)

    def test_slow_handler_does_not_stall_another(self):
        """A blocked handler does not delay events to another handler."""
        gate = threading.Event()
        self.addCleanup(gate.set)
        slow, fast = Recorder(gate=gate), Recorder()
        self.dispatcher.add('slow', slow)
        self.dispatcher.add('fast', fast)
        self.dispatcher.dispatch(_events(3))
        base.wait_for(lambda: len(fast.calls) == 3, timeout=10)
        self.assertEqual([], slow.calls)
        gate.set()
        base.wait_for(lambda: len(slow.calls) == 3, timeout=10)

    def test_failing_handler_is_counted_and_isolated(self):
        """A raising handler is counted per event and others still run."""
        recorder = Recorder()
        self.dispatcher.add('bad', Failing())
        self.dispatcher.add('good', recorder)
        self.dispatcher.dispatch(_events(3))
        self.assertTrue(self.dispatcher.wait_idle(10))
        self.assertEqual(3, self.metrics.value(
            'consumer_handler_failures_total', handler='bad'))
        self.assertEqual(3, len(recorder.calls))
        self.dispatcher.dispatch(_events(1))
        self.assertTrue(self.dispatcher.wait_idle(10))
        self.assertEqual(4, self.metrics.value(
            'consumer_handler_failures_total', handler='bad'))

    def test_full_queue_drops_and_counts(self):
        """Events beyond a stuck handler's bound are dropped and counted."""
        gate = threading.Event()
        self.addCleanup(gate.set)
        stuck = Recorder(gate=gate)
        self.dispatcher.add('stuck', stuck)
        self.dispatcher.dispatch(_events(1))
        # The first event is off the queue, blocked inside the handler.
        self.assertTrue(stuck.entered.wait(10))
        dropped = self.dispatcher.dispatch(_events(8))
        self.assertEqual(3, dropped)
        self.assertEqual(3, self.metrics.value(
            'consumer_handler_dropped_total', handler='stuck'))
        gate.set()
        self.assertTrue(self.dispatcher.wait_idle(10))
        self.assertEqual(6, len(stuck.calls))

    def test_dispatch_never_blocks(self):
        """dispatch() returns while every handler is blocked."""
        gate = threading.Event()
        self.addCleanup(gate.set)
        self.dispatcher.add('stuck', Recorder(gate=gate))
        done = threading.Event()

        def feed():
            for _ in range(10):
                self.dispatcher.dispatch(_events(10))
            done.set()

        threading.Thread(target=feed, daemon=True).start()
        self.assertTrue(done.wait(10))

    def test_tables_filter(self):
        """A handler with a tables filter only receives those tables."""
        recorder = Recorder(tables=['b'])
        self.dispatcher.add('rec', recorder)
        self.dispatcher.dispatch(_events(2, 'a') + _events(1, 'b'))
        self.assertTrue(self.dispatcher.wait_idle(10))
        self.assertEqual([('add', 'b', (0,), {'id': 0})], recorder.calls)

    def test_stop_drains_queues(self):
        """stop() delivers what was queued before ending the threads."""
        recorder = Recorder()
        self.dispatcher.add('rec', recorder)
        self.dispatcher.dispatch(_events(5))
        self.assertTrue(self.dispatcher.stop(10))
        self.assertEqual(5, len(recorder.calls))
        self.assertEqual(0, self.dispatcher.dispatch(_events(1)))
        self.assertRaises(ValueError, self.dispatcher.add, 'x', Recorder())

    def test_stop_gives_up_on_stuck_handler(self):
        """stop() returns after its timeout when a handler never finishes."""
        gate = threading.Event()
        self.addCleanup(gate.set)
        self.dispatcher.add('stuck', Recorder(gate=gate))
        self.dispatcher.dispatch(_events(5))
        self.assertFalse(self.dispatcher.stop(0.2))

    def test_duplicate_name_rejected(self):
        """Two handlers cannot share a name."""
        self.dispatcher.add('a', Recorder())
        self.assertRaises(ValueError, self.dispatcher.add, 'a', Recorder())


class TestLoading(base.TestCase):

    def test_logging_handler_loads_by_name(self):
        """The logging handler loads from [consumer] handlers and logs."""
        self.conf.set_override('handlers', ['logging'], 'consumer')
        loaded = handlers.load_handlers(self.conf)
        self.assertEqual(['logging'], [name for name, _ in loaded])
        handler = loaded[0][1]
        self.assertIsInstance(handler, handlers.LoggingHandler)
        logger = self.useFixture(fixtures.FakeLogger(level='DEBUG'))
        handler.on_add('t', (1,), {'id': 1})
        handler.on_update('t', (1,), {'id': 1}, {'id': 1, 'v': 2})
        handler.on_delete('t', (1,), {'id': 1})
        self.assertIn('add t (1,)', logger.output)
        self.assertIn('delete t (1,)', logger.output)

    def test_unknown_handler_is_a_config_error(self):
        """Naming a handler that does not exist raises ConfigError."""
        self.assertRaises(exceptions.ConfigError, handlers.load_handlers,
                          self.conf, ['no-such-handler'])

    def test_no_names_loads_nothing(self):
        """An empty handlers option loads nothing."""
        self.assertEqual([], handlers.load_handlers(self.conf))
