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


"""Numbers, times and delays shared by the relay and direct delivery."""

import datetime
import random

#: First backoff delay in seconds (doubles up to retry_max_backoff).
BACKOFF_START = 0.1


def utcnow():
    """Naive UTC now, the way the outbox stores timestamps."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def as_utc(value):
    """An outbox timestamp (naive UTC or aware) as an aware UTC datetime."""
    if value.tzinfo is None:
        return value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(datetime.timezone.utc)


def backoff(failures, cap):
    """Capped, jittered exponential delay after ``failures`` failures."""
    ceiling = min(cap, BACKOFF_START * (2 ** min(failures - 1, 30)))
    return random.uniform(ceiling / 2.0, ceiling)  # nosec - not crypto


def next_seq(last_seq, assigned):
    """The first number to assign after ``last_seq``.

    :param assigned: the numbers given to entries not yet marked
        published (in any order; may be empty).
    """
    return max([last_seq or 0] + [seq for seq in assigned
                                  if seq is not None]) + 1
