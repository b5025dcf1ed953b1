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

"""The reorder / snapshot buffer of a stream: {seq: Pending}.

Plain functions over the dict the reconciler owns (and guards with its
lock): taking the contiguous run after the applied position, and
dropping what no host can have sent.
"""

import collections


class Pending(collections.namedtuple(
        'Pending', 'seq committed_at changes tables arrival epoch')):
    """A buffered transaction with the table header of its message.

    ``arrival`` numbers buffered messages in the order they came (what
    arrived before a snapshot was requested cannot be numbered beyond the
    snapshot's watermark); ``epoch`` is the stream epoch of its message
    (None: format 1.0).
    """

    __slots__ = ()


def drop_applied(buffer, applied):
    """Remove and count the entries with ``seq <= applied``."""
    stale = [seq for seq in buffer if seq <= applied]
    for seq in stale:
        del buffer[seq]
    return len(stale)


def take_run(buffer, applied, limit):
    """Pop the contiguous entries after ``applied`` (at most ``limit``)."""
    run = []
    seq = applied + 1
    while seq in buffer and len(run) < limit:
        run.append(buffer.pop(seq))
        seq += 1
    return run


def drop_impossible(buffer, watermark, requested):
    """Remove entries numbered beyond ``watermark`` that arrived early.

    When a snapshot was requested (arrival counter ``requested``), the
    host had numbered nothing beyond the watermark it returned; an entry
    that arrived before the request yet carries a higher number is forged
    or from another incarnation of the stream. Returns the removed seqs.
    """
    bogus = sorted(seq for seq, item in buffer.items()
                   if seq > watermark and item.arrival <= requested)
    for seq in bogus:
        del buffer[seq]
    return bogus
