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

"""Messages of many listener threads, processed in batches while busy.

The notification listener hands each message to an executor thread of
its own, and that thread must hold the message (unacknowledged) until
its effect is persisted. Letting every thread also verify and reconcile
its message made them race for the interpreter and the stream's lock,
finish out of order and wait for each other's turns. Here the threads
only queue their messages; one of them at a time (whichever finds no
batch in progress: flat combining, no thread of its own) takes
everything queued, in arrival order, and processes it as one batch
(:attr:`process`). An idle stream thus handles a message at once; a
busy one handles what arrived during the previous batch in the next,
with no window to wait out. The other threads wait only for their own
item (a condition each) and then settle their message themselves.
"""

import threading


class _Item(object):
    __slots__ = ('payload', 'result', 'done', 'cond')

    def __init__(self, payload, cond):
        self.payload = payload
        self.result = None
        self.done = False
        self.cond = cond


class Intake(object):
    """Queue of items processed in arrival-order batches.

    :param process: ``callable(payloads) -> results``: one result per
        payload, in order. It must not raise (an exception it raises is
        given as the result of every item of the batch).
    :param max_batch: most items processed in one batch.
    """

    def __init__(self, process, max_batch=1000):
        self._process = process
        self._max_batch = max_batch
        self._lock = threading.Lock()
        #: Items queued, not yet taken into a batch (arrival order).
        self._queue = []
        #: True while a thread processes a batch.
        self._busy = False

    def submit(self, payload):
        """Process ``payload`` (in some batch); return its result."""
        item = _Item(payload, threading.Condition(self._lock))
        with self._lock:
            self._queue.append(item)
            while not item.done:
                if self._busy:
                    item.cond.wait()
                    continue
                batch = self._queue[:self._max_batch]
                del self._queue[:len(batch)]
                self._busy = True
                self._lock.release()
                results = None
                try:
                    results = self._run(batch)
                finally:
                    self._lock.acquire()
                    self._finish(batch, results)
        return item.result

    def _finish(self, batch, results):
        # Caller holds the lock: hand out the results, wake their threads
        # and the one that takes the next batch.
        self._busy = False
        if results is None:  # interrupted (not an Exception)
            results = [RuntimeError('intake interrupted')] * len(batch)
        for item, result in zip(batch, results):
            item.result = result
            item.done = True
            item.cond.notify()
        if self._queue:
            self._queue[0].cond.notify()

    def _run(self, batch):
        payloads = [item.payload for item in batch]
        try:
            results = self._process(payloads)
        except Exception as exc:  # noqa: handed to every waiting thread
            return [exc] * len(batch)
        if len(results) != len(batch):
            error = RuntimeError('intake: %d results for %d items'
                                 % (len(results), len(batch)))
            return [error] * len(batch)
        return results
