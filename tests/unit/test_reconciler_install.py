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

"""consumer.reconciler.install.read_table: pages handed on as read."""

import testtools

from consumer.reconciler import install


class _Snap(object):
    def __init__(self, items):
        self.items = items
        self.pulled = 0

    def rows(self, table):
        for item in self.items:
            self.pulled += 1
            yield item


class _Stage(object):
    def __init__(self, snap):
        self.snap = snap
        self.calls = []

    aborted = False

    def table(self, name):
        self.calls.append(('table', name))

    def abort(self):
        self.aborted = True
        self.calls.append(('abort',))

    def add(self, items):
        # What was read when the page was handed on.
        self.calls.append(('add', len(items), self.snap.pulled))


class TestReadTable(testtools.TestCase):

    def test_without_stage(self):
        snap = _Snap([((1,), {'id': 1}), ((2,), {'id': 2})])
        self.assertEqual({(1,): {'id': 1}, (2,): {'id': 2}},
                         install.read_table(snap, 't'))

    def test_pages_go_to_the_stage_while_reading(self):
        items = [((i,), {'id': i}) for i in range(2 * install.PAGE + 7)]
        snap = _Snap(items)
        stage = _Stage(snap)
        got = install.read_table(snap, 't', stage)
        self.assertEqual(dict(items), got)
        self.assertEqual(
            [('table', 't'), ('add', install.PAGE, install.PAGE),
             ('add', install.PAGE, 2 * install.PAGE),
             ('add', 7, len(items))], stage.calls)

    def test_repeated_key_aborts_the_stage(self):
        items = [((i,), {'id': i}) for i in range(install.PAGE)]
        items += [((1,), {'id': 1, 'last': True}), ((5000,), {'id': 5000})]
        snap = _Snap(items)
        stage = _Stage(snap)
        got = install.read_table(snap, 't', stage)
        self.assertEqual(dict(items), got)
        self.assertEqual({'id': 1, 'last': True}, got[(1,)])
        self.assertEqual([('table', 't'), ('add', install.PAGE, install.PAGE),
                          ('abort',)], stage.calls)
        self.assertTrue(stage.aborted)
        # The next table is not staged either.
        snap.items = [((1,), {'id': 1})]
        got = install.read_table(snap, 'u', stage)
        self.assertEqual({(1,): {'id': 1}}, got)
        self.assertEqual(3, len(stage.calls))

    def test_table_without_primary_key_keeps_the_last_row(self):
        snap = _Snap([((), {'a': 1}), ((), {'a': 2})])
        self.assertEqual({(): {'a': 2}}, install.read_table(snap, 't'))
