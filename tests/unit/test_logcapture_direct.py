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

"""Publishing straight from the log: numbering and replay determinism."""

import datetime
import json
from unittest import mock

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from oslo_publish import exceptions
from oslo_publish import metrics
from oslo_publish import outbox
from oslo_publish.logcapture import base as log_base
from oslo_publish.logcapture import direct
from oslo_publish.logcapture import staging
from oslo_publish.logcapture import staging_pg
from oslo_publish.relay import numbering
from oslo_publish import wire
from tests import base

_T0 = datetime.datetime(2026, 1, 2, 3, 4, 5, 678901,
                        tzinfo=datetime.timezone.utc)


def _tx(n, micros=True):
    after = {'id': n, 'name': 'b', 'price': '1.50'}
    change = {'op': 'update', 'table': 'items', 'key': [n],
              'before': {'name': 'a'}, 'after': after, 'changed': ['name']}
    at = _T0 + datetime.timedelta(seconds=n)
    if not micros:
        at = at.replace(microsecond=0)
    return log_base.LogTransaction(
        '%016X' % (0x2000 + n), 900 + n,
        at.astimezone(datetime.timezone(datetime.timedelta(hours=2))),
        [change], {'items': {'pk': ['id'], 'version': 'v1'}})


def _through_outbox(stream, tx, seq):
    """What the relay publishes for ``tx`` staged and numbered ``seq``."""
    committed_at = tx.committed_at.astimezone(
        datetime.timezone.utc).replace(tzinfo=None)
    data = json.loads(staging.payload(tx.changes, tx.tables))
    return {'seq': seq, 'txid': staging.txid(stream, tx.position),
            'committed_at': numbering.as_utc(committed_at).isoformat(),
            'changes': data['changes']}, data['tables']


class _Relay(object):
    """Records what publish_transactions got; fails when told."""

    def __init__(self, fail_after=None):
        self.published = []
        self.fail_after = fail_after
        self.metrics = metrics.HostMetrics()
        self.seen = []

    def saw_last_seq(self, seq):
        self.seen.append(seq)

    def publish_transactions(self, entries, epoch):
        confirmed = []
        for entry in entries:
            if self.fail_after is not None and \
                    len(self.published) >= self.fail_after:
                return confirmed, exceptions.DeliveryError('down')
            self.published.append((entry, epoch))
            confirmed.append(entry)
        return confirmed, None


class TestMessages(base.TestCase):

    def test_numbers_follow_last_seq_in_commit_order(self):
        txs = [_tx(n) for n in range(1, 5)]
        got = direct.messages('s', txs, 41)
        self.assertEqual([42, 43, 44, 45], [seq for seq, _, _ in got])
        self.assertEqual([42, 43, 44, 45], [tx['seq'] for _, tx, _ in got])

    def test_content_is_what_the_outbox_path_publishes(self):
        """Same dicts, same bytes, as staging then the relay would give."""
        for micros in (True, False):
            txs = [_tx(n, micros) for n in range(1, 4)]
            got = direct.messages('s', txs, 7)
            for (seq, tx, tables), orig in zip(got, txs):
                want_tx, want_tables = _through_outbox('s', orig, seq)
                self.assertEqual(want_tx, tx)
                self.assertEqual(want_tables, tables)
                # Byte for byte, key order included.
                self.assertEqual(json.dumps(want_tx), json.dumps(tx))
                self.assertEqual(wire.encoded_size(want_tx),
                                 wire.encoded_size(tx))

    def test_replay_is_deterministic(self):
        """A replay from the same record gives the same numbers, content."""
        txs = [_tx(n) for n in range(1, 6)]
        first = direct.messages('s', txs, 10)
        again = direct.messages('s', [_tx(n) for n in range(1, 6)], 10)
        self.assertEqual(json.dumps(first), json.dumps(again))
        # Replayed from a record after the second transaction.
        later = direct.messages('s', txs[2:], first[1][0])
        self.assertEqual(json.dumps(first[2:]), json.dumps(later))

    def test_txid_depends_on_stream_and_position(self):
        one = direct.messages('s', [_tx(1)], 0)[0][1]['txid']
        self.assertEqual(staging.txid('s', _tx(1).position), one)
        self.assertNotEqual(one, direct.messages('t', [_tx(1)], 0)
                            [0][1]['txid'])


class TestDirect(base.TestCase):

    def _locked(self, last_seq=5, epoch='e' * 32, pending=False):
        return staging_pg.Locked('', '1:1:', last_seq, epoch, pending)

    def test_eligible_only_with_the_lock_and_nothing_pending(self):
        dr = direct.Direct(_Relay(), 's')
        self.assertTrue(dr.eligible(self._locked()))
        self.assertFalse(dr.eligible(self._locked(last_seq=None,
                                                  epoch=None)))
        self.assertFalse(dr.eligible(self._locked(pending=True)))
        self.assertFalse(dr.eligible(self._locked(epoch=None)))
        self.assertEqual(3, dr.staged)

    def test_publish_returns_the_new_last_seq(self):
        relay = _Relay()
        dr = direct.Direct(relay, 's')
        seq, failure = dr.publish([_tx(1), _tx(2)], 5, 'e' * 32)
        self.assertIsNone(failure)
        self.assertEqual(7, seq)
        self.assertEqual([6, 7], [e[0][0] for e in relay.published])
        self.assertEqual({'e' * 32}, {e[1] for e in relay.published})
        self.assertEqual(1, dr.published)

    def test_unconfirmed_publish_keeps_last_seq(self):
        relay = _Relay(fail_after=1)
        dr = direct.Direct(relay, 's')
        seq, failure = dr.publish([_tx(1), _tx(2)], 5, 'e' * 32)
        self.assertIsInstance(failure, exceptions.DeliveryError)
        self.assertEqual(5, seq)
        self.assertEqual(1, dr.staged)

    def test_last_seq_going_back_stages_and_tells_the_relay(self):
        """A restored database: never renumber within the same epoch."""
        relay = _Relay()
        dr = direct.Direct(relay, 's')
        dr.recorded('e' * 32, 9)
        self.assertEqual([9], relay.seen)
        self.assertTrue(dr.eligible(self._locked(last_seq=9)))
        self.assertFalse(dr.eligible(self._locked(last_seq=5)))
        self.assertEqual([9, 9], relay.seen)
        # Once the relay started a new epoch, straight publishing resumes.
        self.assertTrue(dr.eligible(self._locked(last_seq=5,
                                                 epoch='f' * 32)))

    def test_usable_needs_publish_transactions(self):
        self.assertTrue(direct.usable(_Relay()))
        self.assertFalse(direct.usable(None))
        self.assertFalse(direct.usable(object()))

    def test_not_usable_when_the_outbox_keeps_published_entries(self):
        relay = _Relay()
        relay.retains_entries = True
        self.assertFalse(direct.usable(relay))

    def test_skip_locked_by_server_version(self):
        def dialect(name, version, mariadb=False):
            return mock.Mock(spec=['name', 'server_version_info',
                                   'is_mariadb'], name=name,
                             server_version_info=version, is_mariadb=mariadb)
        for name, version, mariadb, expected in (
                ('mysql', (10, 11, 19), True, True),
                ('mariadb', (10, 6, 0), True, True),
                ('mysql', (10, 5, 9), True, False),
                ('mysql', (8, 0, 36), False, True),
                ('mysql', (5, 7, 44), False, False),
                ('mysql', None, True, False),
                ('postgresql', (16, 1), False, False)):
            d = dialect(name, version, mariadb)
            d.name = name
            self.assertEqual(expected, direct.skip_locked(d),
                             (name, version, mariadb))


class TestLockStreamSQL(base.TestCase):

    def test_skip_locked_is_rendered_for_mariadb(self):
        query = (sa.select(outbox.streams.c.last_seq)
                 .with_for_update(skip_locked=True))
        sql = str(query.compile(dialect=mysql.dialect(is_mariadb=True)))
        self.assertIn('FOR UPDATE SKIP LOCKED', sql)
