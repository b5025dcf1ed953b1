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


"""Pre-fork servers: what :func:`oslo_publish.install` does at ``fork()``.

``gunicorn --preload``, uWSGI without ``lazy-apps``, oslo.service
process workers: the service calls ``install()`` in a master process
that then forks its workers. Threads do not survive ``fork()``, and a
child must never use the database sessions or broker connections of its
parent (they share the sockets). :func:`register` arranges, with
:func:`os.register_at_fork`:

* before a fork, the in-process relay finishes its current cycle (so no
  lock of the parent is inherited held mid-cycle);
* in the child: the engine's pool is replaced
  (``Engine.dispose(close=False)``: the parent's connections are left to
  it), the relay forgets the parent's thread and sessions, and the outbox
  sink keeps waking the PARENT's relay thread through the inherited wake
  pipe, so every commit of a worker is published at once by the master's
  relay; direct delivery starts a publishing thread of its own, on a new
  broker connection; :meth:`Handle.stop` in the child leaves the
  parent's threads and connections alone.

When the master does not keep running (or runs no relay), run the relay
as a service instead (``oslo-publish-relay``, ``relay_in_process =
false``); on PostgreSQL it is woken by ``NOTIFY`` at each commit.
"""

import os
import threading
import weakref

from oslo_log import log

LOG = log.getLogger(__name__)

_handles = []
_guard = threading.Lock()
_registered = False


def register(handle):
    """Make ``handle`` (an installed :class:`oslo_publish.Handle`) fork-safe.

    Idempotent; handles are held weakly and forgotten when stopped.
    """
    global _registered
    with _guard:
        _handles.append(weakref.ref(handle))
        if not _registered and hasattr(os, 'register_at_fork'):
            os.register_at_fork(before=_before,
                                after_in_parent=_after_in_parent,
                                after_in_child=_after_in_child)
            _registered = True


def unregister(handle):
    """Forget ``handle`` (it was stopped)."""
    with _guard:
        _handles[:] = [ref for ref in _handles
                       if ref() is not None and ref() is not handle]


def _live():
    return [h for h in (ref() for ref in list(_handles)) if h is not None]


def _guards():
    return [h.relay.fork_guard for h in _live()
            if h.relay is not None and h.relay.running]


_held = []


def _before():
    _guard.acquire()
    for lock in _guards():
        lock.acquire()
        _held.append(lock)


def _after_in_parent():
    while _held:
        _held.pop().release()
    _guard.release()


def _after_in_child():
    del _held[:]
    global _guard
    _guard = threading.Lock()
    for handle in _live():
        try:
            handle.after_fork_in_child()
        except Exception:  # noqa: never break the child's start
            LOG.exception('oslo.publish: preparing a forked child failed')
