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

"""Authentication of snapshot requests, shared by both halves.

A consumer that has a ``signing_key`` sends, with ``snapshot_open``, an
``auth`` object::

    {"stream": S, "method": "snapshot_open", "tables": [...],
     "client": "<host>.<pid>.<random>", "time": <unix seconds>,
     "nonce": "<hex>", "deadline": <unix seconds>,
     "signature": HMAC-SHA256}

signed like every other message (:func:`oslo_publish.wire.sign`). A host
that has a key checks it *before* it opens anything: a missing or wrong
signature, another stream, other tables, or a time further than
:data:`MAX_SKEW` seconds from the host's clock is refused. A host
without a key ignores ``auth`` but for the client name (for the
per-client limit) and the ``deadline``.

``deadline`` (optional; consumers since the orphaned-snapshot fix send
it, older hosts ignore it) is when the caller stops waiting for the
answer: a host refuses a request it takes up after that (``late``, see
:func:`seconds_late`), and closes again a snapshot it finished opening
after it, so a request that sat in the broker queue while the host
restarted does not leave a snapshot open that nobody reads.

The snapshot id the host answers with is then the capability for the
pages: 128 random bits, valid until the snapshot is closed.
"""

import os
import socket
import time
import uuid

from oslo_publish import wire

#: Seconds a signed request stays acceptable (clock skew plus transit).
MAX_SKEW = 300.0

OPEN = 'snapshot_open'


class AuthError(Exception):
    """A snapshot request failed authentication; ``reason`` is one word."""

    def __init__(self, reason, detail):
        super().__init__('%s: %s' % (reason, detail))
        self.reason = reason
        self.detail = detail


def client_name():
    """A name unique to this process: ``<host>.<pid>.<random>``."""
    return '%s.%d.%s' % (socket.gethostname(), os.getpid(),
                         uuid.uuid4().hex[:6])


def request_auth(key, stream, tables, client, now=None, timeout=None):
    """The ``auth`` argument of a ``snapshot_open`` request.

    :param key: the signing key (None: the object is sent unsigned, it
        then only names the client).
    :param tables: the list of tables requested (as sent).
    :param timeout: seconds the caller waits for the answer; sent as the
        ``deadline`` (unix seconds) after which the host refuses the
        request instead of opening a snapshot nobody will read.
    """
    now = time.time() if now is None else now
    message = {'stream': stream, 'method': OPEN, 'tables': list(tables),
               'client': client, 'time': now,
               'nonce': uuid.uuid4().hex}
    if timeout is not None:
        message['deadline'] = now + timeout
    return wire.sign(message, key)


def seconds_late(auth, now=None):
    """Seconds past the ``deadline`` of a request's ``auth``, or None.

    None when the request carries no usable deadline (a consumer of an
    older release) or it has not passed yet.
    """
    deadline = auth.get('deadline') if isinstance(auth, dict) else None
    if isinstance(deadline, bool) or \
            not isinstance(deadline, (int, float)):
        return None
    late = (time.time() if now is None else now) - deadline
    return late if late > 0 else None


def check_request(auth, key, stream, tables, now=None):
    """Check a request's ``auth``; return the client name it claims.

    :raises AuthError: reason ``unauthenticated`` (no auth while a key is
        set), ``bad_signature``, ``malformed`` or ``expired``.
    """
    if auth is None:
        if key:
            raise AuthError('unauthenticated', 'the request carries no '
                            'signed auth object and a signing key is set')
        return None
    if not isinstance(auth, dict):
        raise AuthError('malformed', 'auth is not an object')
    try:
        wire.check_signature(auth, key)
    except wire.WireError as exc:
        raise AuthError(exc.reason, exc.detail) from None
    client = auth.get('client')
    if client is not None and not isinstance(client, str):
        raise AuthError('malformed', 'client is not text')
    if not key:
        return client
    if auth.get('stream') != stream or auth.get('method') != OPEN:
        raise AuthError('malformed', 'auth of another stream or method')
    if list(auth.get('tables') or []) != list(tables or []):
        raise AuthError('malformed', 'auth of other tables')
    stamp = auth.get('time')
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)):
        raise AuthError('malformed', 'time is not a number')
    now = time.time() if now is None else now
    if abs(now - stamp) > MAX_SKEW:
        raise AuthError('expired', 'request time is %.0fs from the host '
                        'clock' % (now - stamp))
    return client


class NonceCache(object):
    """Nonces of accepted requests, remembered for :data:`MAX_SKEW`.

    A signed request seen once is refused the second time (``replayed``):
    its bytes cross the bus in clear, so anyone on the broker could
    otherwise open snapshots with it. Not thread-safe: the caller holds
    its own lock.
    """

    def __init__(self, ttl=MAX_SKEW):
        self._ttl = ttl
        self._seen = {}

    def check_and_add(self, auth, now=None):
        """Remember ``auth``'s nonce; raise :class:`AuthError` if seen."""
        nonce = auth.get('nonce') if isinstance(auth, dict) else None
        if not isinstance(nonce, str) or not nonce:
            raise AuthError('malformed', 'auth carries no nonce')
        now = time.monotonic() if now is None else now
        if len(self._seen) > 1024:
            limit = now - self._ttl
            self._seen = {n: t for n, t in self._seen.items() if t >= limit}
        if nonce in self._seen:
            raise AuthError('replayed', 'this request was already served')
        self._seen[nonce] = now
