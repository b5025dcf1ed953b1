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

"""Pausing Python's cyclic garbage collector around bulk work.

An initial sync creates millions of container objects (decoded rows,
frozen cache rows, events) that all stay alive. Each time the young
generations overflow, CPython's collector may scan every tracked object
of the process; with a large table most of the time of building the
cache then goes into collections that find nothing (none of these
objects form cycles, reference counting frees them).

:func:`paused` disables the collector for the duration of a block. It
is reference counted across threads: the collector is disabled by the
first block that enters and enabled again when the last one leaves, and
only if it was enabled before (an application that disabled it keeps it
disabled). Garbage created meanwhile is collected once the collector
runs again.

Objects created during a paused block are all in the youngest
generation when it ends: the next young collection scans every one of
them, the middle one again, and moving them into the oldest generation
then triggers a full collection (CPython starts one once a quarter of
the long-lived objects are new). For a bulk load whose objects stay
alive, :func:`promote_young` moves them into the oldest generation
without scanning them: they are examined by the next full collection
that comes due anyway, and cycles among them are still collected then
(unlike :func:`freeze_survivors`, which exempts them for good).

A full collection still comes due soon after such a load (the
collector counts the new long-lived objects against the heap it saw at
its last full collection) and scans them all, in the middle of the
work that follows. :func:`hold` exempts everything alive from
collection until :func:`release` (a catch-up after a resume): it
freezes (:func:`gc.freeze`) and the last release unfreezes, so cycles
are collected again afterwards.
"""

import contextlib
import gc
import threading

_lock = threading.Lock()
_depth = 0
_restore = False
#: Holds taken by hold() and not released yet.
_holds = 0
#: Size of the permanent generation after our last freeze (it only
#: shrinks as frozen objects die, unless someone else freezes more).
_held_count = 0


@contextlib.contextmanager
def paused():
    """Run the block with the cyclic garbage collector disabled."""
    global _depth, _restore
    with _lock:
        if _depth == 0:
            _restore = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _restore:
                gc.enable()


def freeze_survivors():
    """Move every object alive now to the permanent generation.

    For a bulk load whose objects all stay alive (a resume from the
    state store): a young collection first frees the short-lived cycles
    the load left, then :func:`gc.freeze` moves everything that survives
    out of the collected generations, so that later full collections do
    not rescan it. A no-op while the collector is disabled (by the
    application, or by a :func:`paused` block running meanwhile).

    :returns: the number of objects frozen by this call (0 when
        skipped).
    """
    with _lock:
        if _depth or not gc.isenabled():
            return 0
        before = gc.get_freeze_count()
        gc.collect(0)
        gc.freeze()
        return gc.get_freeze_count() - before


def _enabled_outside():
    """Whether the collector is enabled outside :func:`paused` (_lock)."""
    return _restore if _depth else gc.isenabled()


def promote_young():
    """Move every tracked object to the oldest generation, unscanned.

    Call it at the end of a bulk load, inside its :func:`paused` block
    (so that no young collection scans the new objects first). Done with
    :func:`gc.freeze` immediately followed by :func:`gc.unfreeze` (which
    puts the permanent generation back into the oldest one); skipped
    when the permanent generation is not empty (an application that
    froze objects itself keeps them frozen) and when the collector was
    disabled before the block.

    :returns: the number of objects moved (0 when skipped).
    """
    with _lock:
        if not _enabled_outside() or gc.get_freeze_count():
            return 0
        gc.freeze()
        moved = gc.get_freeze_count()
        gc.unfreeze()
        return moved


def hold():
    """Exempt everything alive from collection until :func:`release`.

    Call it at the end of a bulk load, inside its :func:`paused` block.
    Holds are counted: the first one freezes, later ones freeze what
    was created since, the last :func:`release` unfreezes (the objects
    go back to the oldest generation, see :func:`promote_young`).
    Skipped when the collector was disabled before the block or when the
    permanent generation holds objects frozen by someone else (an
    application that freezes objects itself keeps them frozen).

    :returns: True when held (release it once), False when skipped.
    """
    global _holds, _held_count
    with _lock:
        if not _enabled_outside():
            return False
        count = gc.get_freeze_count()
        if count and (not _holds or count > _held_count):
            return False
        gc.freeze()
        _holds += 1
        _held_count = gc.get_freeze_count()
        return True


def release():
    """End a :func:`hold`; the last one unfreezes what was held.

    When something else froze objects meanwhile (the permanent
    generation grew), nothing is unfrozen: what was held stays frozen.
    """
    global _holds, _held_count
    with _lock:
        if not _holds:
            return
        _holds -= 1
        if _holds:
            return
        if gc.get_freeze_count() <= _held_count:
            gc.unfreeze()
        _held_count = 0


def holds():
    """Number of :func:`hold` calls not released yet."""
    return _holds


def depth():
    """Number of blocks holding the collector paused now."""
    return _depth
