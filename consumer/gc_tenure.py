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

"""Tenuring: what survived a full collection is not scanned again soon.

A consumer whose cache grows (a table that keeps getting new rows) adds
tracked objects to the process for good: a frozen row per cached row,
the nodes of the cache's maps. CPython starts a full collection each
time the objects promoted to its oldest generation since the last one
exceed a quarter of those it found there, and a full collection scans
every tracked object of the process. So the collector scans the whole
heap again every time it grew by a quarter: with a few hundred thousand
cached rows that is 0.1 to 0.4 s of CPU every second or two, taken from
whichever thread allocated last (measured in the 100-row keeping-up
benchmark: about 40% of the consumer process's CPU).

:func:`install` adds a :data:`gc.callbacks` hook: at the end of each full
collection, everything that survived it is moved to the permanent
generation (:func:`gc.freeze`), so the next full collections scan only
what was promoted since. Reference cycles among the frozen objects
would never be collected, so the frozen objects are given back
(:func:`gc.unfreeze`) once the permanent generation has grown to
:data:`GROWTH` times its size after the last full scan (and at least
:data:`MIN_RESCAN` objects): the next full collection then scans
everything, collects such cycles, and freezes the survivors again. Each
object is thus scanned by a bounded number of full collections on
average, however large the cache grows, and a garbage cycle waits at
most until the heap doubled.

It is process-wide (the collector is): installs are counted, the hook
is removed by the last :func:`uninstall`. Objects frozen by anyone else
(``gc_freeze_after_sync``, the catch-up hold of :mod:`consumer.gc_pause`)
are given back at a rescan too, and frozen again after it with the
other survivors.
"""

import gc
import threading

from oslo_log import log

LOG = log.getLogger(__name__)

#: A full scan is due once the permanent generation holds this many
#: times the objects it held after the last full scan.
GROWTH = 2.0
#: ... and at least this many objects (no rescans of a small heap).
MIN_RESCAN = 100000

_lock = threading.Lock()
_installs = 0


class _Tenure(object):
    """The :data:`gc.callbacks` hook (one per process)."""

    def __init__(self):
        #: Size of the permanent generation after the last full scan;
        #: None while a full scan is due (after an unfreeze).
        self.base = None
        self.freezes = 0
        self.rescans = 0

    def __call__(self, phase, info):
        if phase != 'stop' or info.get('generation') != 2:
            return
        frozen = gc.get_freeze_count()
        if self.base is not None and \
                frozen >= max(self.base * GROWTH, MIN_RESCAN):
            # Everything goes back to the oldest generation: the next full
            # collection (due soon, the collector counts these as new)
            # scans it all.
            gc.unfreeze()
            self.base = None
            self.rescans += 1
            return
        gc.freeze()
        self.freezes += 1
        if self.base is None:
            self.base = gc.get_freeze_count()


_hook = _Tenure()


def install():
    """Start tenuring (counted; the first call adds the hook)."""
    global _installs
    with _lock:
        _installs += 1
        if _installs == 1:
            _hook.base = None
            gc.callbacks.append(_hook)
            LOG.info('Garbage collector tenuring on: survivors of full '
                     'collections are frozen until the heap doubled')


def uninstall():
    """Stop tenuring; the last call removes the hook and unfreezes.

    What the hook froze goes back to the oldest generation (with anything
    else frozen meanwhile), so no cycle among it stays uncollectable.
    """
    global _installs
    with _lock:
        if not _installs:
            return
        _installs -= 1
        if _installs:
            return
        try:
            gc.callbacks.remove(_hook)
        except ValueError:
            pass
        if _hook.freezes:
            gc.unfreeze()
        _hook.base = None
        _hook.freezes = 0
        _hook.rescans = 0


def installed():
    """True while tenuring is on in this process."""
    return _installs > 0


def stats():
    """``{'freezes': n, 'rescans': n}`` since tenuring was turned on."""
    return {'freezes': _hook.freezes, 'rescans': _hook.rescans}
