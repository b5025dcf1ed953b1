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

"""Exceptions of the consumer. One root, narrow subclasses."""


class ConsumerError(Exception):
    """Root of every error raised by the consumer."""


class ConfigError(ConsumerError, ValueError):
    """A configuration value is wrong; the message names the option."""

    def __init__(self, option, value, reason, group='consumer'):
        super().__init__('[%s] %s = %r: %s' % (group, option, value, reason))
        self.option = option
        self.value = value


class Rejected(ConsumerError):
    """A message was refused before it touched cache or state.

    ``reason`` is the counter label (see :mod:`consumer.verify`).
    """

    def __init__(self, reason, detail):
        super().__init__('%s: %s' % (reason, detail))
        self.reason = reason
        self.detail = detail


class SnapshotFailed(ConsumerError):
    """The source could not deliver a snapshot; the resync is retried."""


class NotSynced(ConsumerError):
    """wait_synced() ran out of time."""


class MigrationError(ConsumerError):
    """Stored state could not be brought in line with the publisher."""
