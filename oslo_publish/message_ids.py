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

"""Random message ids without a system call per message.

Every notification carries two random ids (oslo.messaging's
``message_id`` and the ``_unique_id`` its drivers check for duplicates).
``uuid.uuid4()`` reads ``os.urandom``, a system call that releases the
interpreter lock: on the relay's way from the numbering commit to the
broker each such release lets the service's threads run first, and the
relay waits for the lock again. Here the ids are version 4 UUIDs drawn
from a generator seeded once from ``os.urandom`` (and again in a forked
child, so that parent and child never draw the same ids). They only need
to be unique, not unpredictable: nothing is authenticated with them.
"""

import os
import random
import uuid

_random = random.Random()


def _reseed():
    _random.seed(os.urandom(32))


_reseed()
os.register_at_fork(after_in_child=_reseed)


def new_uuid():
    """A random (version 4) :class:`uuid.UUID`."""
    return uuid.UUID(int=_random.getrandbits(128), version=4)
