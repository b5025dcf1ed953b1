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

"""pgoutput protocol parsing, positions and snapshot visibility."""

import struct

from oslo_publish.logcapture import pgoutput
from tests import base


def _tuple(*values):
    out = struct.pack('!h', len(values))
    for value in values:
        if value is None:
            out += b'n'
        elif value is pgoutput._UNCHANGED:
            out += b'u'
        else:
            raw = value.encode()
            out += b't' + struct.pack('!i', len(raw)) + raw
    return out


class TestParse(base.TestCase):

    def test_begin_and_commit(self):
        kind, lsn, at, xid = pgoutput.parse(
            b'B' + struct.pack('!QqI', 0x1234, 86400 * 10 ** 6, 77))
        self.assertEqual(('B', 0x1234, 77), (kind, lsn, xid))
        self.assertEqual('2000-01-02T00:00:00+00:00', at.isoformat())
        self.assertEqual(
            ('C', 5, 9),
            pgoutput.parse(b'C' + struct.pack('!bQQq', 0, 5, 9, 0))[:3])

    def test_relation(self):
        payload = (b'R' + struct.pack('!I', 16384) + b'public\0items\0' +
                   struct.pack('!bh', ord('f'), 2) +
                   struct.pack('!b', 1) + b'id\0' + struct.pack('!Ii', 23,
                                                                -1) +
                   struct.pack('!b', 0) + b'name\0' +
                   struct.pack('!Ii', 25, -1))
        self.assertEqual(('R', 16384, 'public', 'items',
                          [('id', 23), ('name', 25)]),
                         pgoutput.parse(payload))

    def test_insert_update_delete_tuples(self):
        new = _tuple('1', None, pgoutput._UNCHANGED)
        self.assertEqual(('I', 7, ['1', None, pgoutput._UNCHANGED]),
                         pgoutput.parse(b'I' + struct.pack('!I', 7) + b'N' +
                                        new))
        old = _tuple('1', 'a', 'b')
        self.assertEqual(
            ('U', 7, ['1', 'a', 'b'], ['1', None, pgoutput._UNCHANGED]),
            pgoutput.parse(b'U' + struct.pack('!I', 7) + b'O' + old + b'N' +
                           new))
        self.assertEqual(
            ('U', 7, None, ['1', None, pgoutput._UNCHANGED]),
            pgoutput.parse(b'U' + struct.pack('!I', 7) + b'N' + new))
        self.assertEqual(('D', 7, ['1', 'a', 'b']),
                         pgoutput.parse(b'D' + struct.pack('!I', 7) + b'O' +
                                        old))
        self.assertEqual(('D', 7, None),
                         pgoutput.parse(b'D' + struct.pack('!I', 7) + b'K' +
                                        _tuple('1')))

    def test_truncate_and_message(self):
        self.assertEqual(('T', [3, 4]), pgoutput.parse(
            b'T' + struct.pack('!ib', 2, 0) + struct.pack('!II', 3, 4)))
        self.assertEqual(
            ('M', False, 99, pgoutput.MARK_PREFIX, 'tok'),
            pgoutput.parse(b'M' + struct.pack('!bQ', 0, 99) +
                           pgoutput.MARK_PREFIX.encode() + b'\0' +
                           struct.pack('!i', 3) + b'tok'))


class TestPositions(base.TestCase):

    def test_positions_sort_as_text_in_lsn_order(self):
        lsns = ['0/16B3748', '0/FFFFFFFF', '1/0', 'A/10']
        texts = [pgoutput.lsn_text(pgoutput.lsn_int(t)) for t in lsns]
        self.assertEqual(texts, sorted(texts))
        self.assertEqual(0x16B3748, pgoutput.lsn_int(texts[0]))

    def test_object_name_is_a_valid_identifier(self):
        self.assertEqual('oslo_publish_nova_api',
                         pgoutput.object_name('Nova-API'))
        long = pgoutput.object_name('x' * 100)
        self.assertLessEqual(len(long), 63)
        self.assertNotEqual(long, pgoutput.object_name('x' * 99 + 'y'))


class TestVisibility(base.TestCase):

    def test_snapshot_rules(self):
        sees = pgoutput.visibility('100:110:100,105')
        self.assertTrue(sees(99))
        self.assertFalse(sees(100))
        self.assertTrue(sees(104))
        self.assertFalse(sees(105))
        self.assertFalse(sees(110))
        self.assertFalse(sees(115))

    def test_32_bit_ids_are_widened_across_an_epoch(self):
        epoch = 1 << 32
        sees = pgoutput.visibility('%d:%d:' % (epoch + 5, epoch + 10))
        self.assertTrue(sees(0xFFFFFFF0))      # previous epoch
        self.assertTrue(sees(4))
        self.assertFalse(sees(12))
        self.assertFalse(sees(0x7FFFFFF0))     # far future of this epoch
