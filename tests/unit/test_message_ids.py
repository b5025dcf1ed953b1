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

"""Message ids: random, unique, no system call per id."""

import os
import uuid

import fixtures

from oslo_publish import message_ids
from tests import base


class TestMessageIds(base.TestCase):

    def test_version_4_and_unique(self):
        """Ids are random version 4 UUIDs, never repeated."""
        ids = [message_ids.new_uuid() for _ in range(10000)]
        self.assertEqual(10000, len(set(ids)))
        for value in ids[:10]:
            self.assertIsInstance(value, uuid.UUID)
            self.assertEqual(4, value.version)
            self.assertEqual(uuid.RFC_4122, value.variant)

    def test_no_system_call_per_id(self):
        """Drawing an id reads no randomness from the kernel."""
        calls = []
        self.useFixture(fixtures.MonkeyPatch(
            'os.urandom', lambda n: calls.append(n) or b'\0' * n))
        message_ids.new_uuid()
        self.assertEqual([], calls)

    def test_a_forked_child_draws_other_ids(self):
        """Parent and child never draw the same ids after a fork."""
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            try:
                os.write(write, message_ids.new_uuid().bytes)
            finally:
                os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        child = os.read(read, 16)
        os.close(read)
        self.assertEqual(16, len(child))
        self.assertNotEqual(message_ids.new_uuid().bytes, child)
