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

"""Exceptions of the host middleware. One root, narrow subclasses."""


class PublishError(Exception):
    """Root of every error raised by oslo_publish."""


class ConfigError(PublishError, ValueError):
    """A configuration value is wrong; the message names the option."""

    def __init__(self, option, value, reason):
        super().__init__('[oslo_publish] %s = %r: %s'
                         % (option, value, reason))
        self.option = option
        self.value = value


class UnsupportedTarget(PublishError, TypeError):
    """install() was given something it cannot attach to."""


class EncodeError(PublishError):
    """A captured value cannot be encoded; the commit is refused."""


class NotInstalled(PublishError):
    """The middleware's own tables are missing; run the manage tool."""


class DeliveryError(PublishError):
    """The broker did not confirm a message (retried by the relay)."""


class SnapshotError(PublishError):
    """A snapshot request was refused (unknown table, too many, expired)."""
