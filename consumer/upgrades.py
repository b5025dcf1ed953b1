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

"""Upgrades of messages of an older wire format, one version at a time.

A step is registered for the format it reads, e.g. ``'1.3'``, and
returns a new message whose ``format`` is the next version it knows
(``'1.4'`` or ``'2.0'``). :func:`upgrade` chains steps until the message
is of the current major (:data:`oslo_publish.wire.FORMAT_MAJOR`) or no
step applies. Format 1 is the first format: the registry ships empty.
When format 2 replaces format 1, the consumer of format 2 registers a
``'1.<last minor>'`` step here that rewrites a format 1 message into
format 2, so that format 1 publishers keep working during an upgrade.
"""

import copy

from oslo_publish import wire

_STEPS = {}


def register(from_format, step):
    """Register ``step(message) -> message`` for format ``from_format``."""
    if from_format in _STEPS:
        raise ValueError('an upgrade step from %s exists' % from_format)
    _STEPS[from_format] = step


def unregister(from_format):
    """Remove the step registered for ``from_format``."""
    _STEPS.pop(from_format, None)


def registered(from_format):
    """True when a step reads format ``from_format`` (``'1.0'``)."""
    return from_format in _STEPS


def upgrade(message):
    """Return ``message`` upgraded to the current major format.

    The input is not modified. A message already of the current major,
    or of a newer one, is returned as it is.

    :raises oslo_publish.wire.WireError: ``unknown_version`` when an
        older message has no upgrade path; ``malformed`` when a step
        does not produce a newer format.
    """
    version = wire.parse_format(message)
    while version[0] < wire.FORMAT_MAJOR:
        step = _STEPS.get('%d.%d' % version)
        if step is None:
            raise wire.WireError('unknown_version',
                                 'no upgrade from format %d.%d' % version)
        message = step(copy.deepcopy(message))
        upgraded = wire.parse_format(message)
        if upgraded <= version:
            raise wire.WireError('malformed', 'upgrade step of format '
                                 '%d.%d did not upgrade' % version)
        version = upgraded
    return message
