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

"""Stage breakdown of commit -> consumer cache, from what is on the bus.

:class:`Tap` binds a queue of its own to a stream's topic, next to the
consumer's, and notes when each delta message arrives (``time.time()``)
together with the timestamps the message carries: the transaction's
``committed_at`` (stamped by the host when it wrote the outbox entry)
and the message's ``sent_at`` (stamped by the relay when it built the
message). Joined with the writer's ``commit()`` time and the time a
change handler saw the row (:func:`breakdown`), this gives per change:

* ``commit_to_sent``: ``commit()`` called -> relay built the message
  (waking the relay, numbering, reading the outbox);
* ``sent_to_received``: relay -> a queue next to the consumer's
  (publish, confirm, broker routing);
* ``received_to_cache``: arrival -> the consumer's change handler, which
  runs once the state store and the cache took the batch (so this stage
  includes persisting and the cache becoming visible);
* ``commit_to_received`` and ``commit_to_cache``, end to end.

The tap's arrival stands for the consumer's (same broker, same routing,
one more queue); every clock is this machine's wall clock. The library
exposes no timestamps of its own for the stages inside the relay or the
consumer (picked up, confirmed, persisted), so they are not separated.
"""

import datetime
import json
import threading
import time
import uuid

from benchmarks import common

STAGES = ('commit_to_sent', 'sent_to_received', 'received_to_cache',
          'commit_to_received', 'commit_to_cache')


def _unix(text):
    if not text:
        return None
    return datetime.datetime.fromisoformat(text).timestamp()


def _payload(body):
    """The oslo_publish message inside an oslo.messaging notification."""
    data = json.loads(body) if isinstance(body, (str, bytes)) else body
    if isinstance(data, dict) and 'oslo.message' in data:
        data = json.loads(data['oslo.message'])
    if isinstance(data, dict) and 'payload' in data:
        data = data['payload']
    return data


class Tap(object):
    """Notes ``(id, value) -> (committed_at, sent_at, arrival)``."""

    def __init__(self, nm):
        import kombu
        self.seen = {}
        self.messages = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conn = kombu.Connection(common.amqp_url())
        self.name = 'bench_stages_%s' % uuid.uuid4().hex[:8]
        channel = self._conn.channel()
        channel.queue_declare(queue=self.name, auto_delete=True)
        channel.queue_bind(queue=self.name, exchange=nm['exchange'],
                           routing_key=nm['topic'] + '.info')
        self._consumer = kombu.Consumer(
            channel, [kombu.Queue(self.name, no_declare=True)],
            callbacks=[self._on_message], no_ack=True)
        self._consumer.consume()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _on_message(self, body, message):
        arrival = time.time()
        try:
            data = _payload(message.body)
        except ValueError:
            return
        if not isinstance(data, dict) or data.get('kind') != 'delta':
            return
        sent = _unix(data.get('sent_at'))
        with self._lock:
            self.messages += 1
            for tx in data.get('transactions', ()):
                committed = _unix(tx.get('committed_at'))
                for change in tx.get('changes', ()):
                    after = change.get('after') or {}
                    if change.get('key') and 'value' in after:
                        self.seen.setdefault(
                            (change['key'][0], after['value']),
                            (committed, sent, arrival))

    def _run(self):
        while not self._stop.is_set():
            try:
                self._conn.drain_events(timeout=0.2)
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                raise

    def close(self):
        self._stop.set()
        self._thread.join(5)
        try:
            self._consumer.cancel()
            self._conn.channel().queue_delete(self.name)
        except Exception:  # noqa: best effort, auto_delete anyway
            pass
        self._conn.release()


def breakdown(commits, handled, tapped):
    """Per-stage ``{'p50_ms', 'p99_ms', 'count'}``.

    :param commits: ``[(id, value, commit_unix_time), ...]``.
    :param handled: ``{(id, value): unix time the handler saw it}``.
    :param tapped: :attr:`Tap.seen`.
    """
    stages = {name: [] for name in STAGES}
    for ident, value, committed in commits:
        got = tapped.get((ident, value))
        cache = handled.get((ident, value))
        if got is None:
            continue
        _stamp, sent, arrival = got
        if sent is not None:
            stages['commit_to_sent'].append(sent - committed)
            stages['sent_to_received'].append(arrival - sent)
        stages['commit_to_received'].append(arrival - committed)
        if cache is not None:
            stages['received_to_cache'].append(cache - arrival)
            stages['commit_to_cache'].append(cache - committed)
    return {name: {'p50_ms': _ms(common.percentile(got, 0.5)),
                   'p99_ms': _ms(common.percentile(got, 0.99)),
                   'count': len(got)}
            for name, got in stages.items()}


def _ms(seconds):
    return None if seconds is None else seconds * 1000.0
