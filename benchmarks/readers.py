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

"""Figure 6, readers: a consistent view of the cache vs copy.deepcopy.

A :class:`consumer.cache.Cache` holds 100,000 rows of the benchmark
table (with a secondary index on ``host``). Taking a consistent view
(:meth:`Cache.view`) is timed against ``copy.deepcopy`` of the same rows
as a dict of dicts (what Watcher does to give readers a stable model).
Memory per cached row is measured with ``tracemalloc`` (cache built from
scratch, input rows released), next to the same rows as a plain dict of
dicts.
"""

import copy
import gc
import time
import tracemalloc

from benchmarks import common

TARGET = 1000.0


def _rows(count):
    return {(n,): common.row(n) for n in range(1, count + 1)}


def _build(count):
    from consumer import cache as cache_mod
    cache = cache_mod.Cache(indexes={common.TABLE: ['host']})
    cache.replace_table(common.TABLE, _rows(count))
    return cache


def _traced(build):
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = build()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del kept
    return after - before


def _view_seconds(cache, calls):
    best = []
    for _ in range(5):
        began = time.perf_counter()
        for _ in range(calls):
            view = cache.view()
            view.count(common.TABLE)
        best.append((time.perf_counter() - began) / calls)
    return common.median(best)


def run(opts):
    count = getattr(opts, 'readers_rows', 100000)
    reps = 3 if opts.quick else 5
    cache = _build(count)
    plain = {k: dict(v) for k, v in cache.view().rows(common.TABLE).items()}
    view_s = _view_seconds(cache, 20000)
    deep = []
    for _ in range(reps):
        began = time.perf_counter()
        copy.deepcopy(plain)
        deep.append(time.perf_counter() - began)
    deep_s = common.median(deep)
    del cache, plain
    cache_bytes = _traced(lambda: _build(count))
    dict_bytes = _traced(lambda: _rows(count))
    return {
        'name': 'readers',
        'title': 'Readers: consistent view of a 100,000-row cache',
        'figures': [
            common.figure(
                '6 consistent view vs copy.deepcopy, %s rows'
                % '{:,}'.format(count), view_s * 1e6, 'us', deep_s * 1e6,
                'copy.deepcopy', inverse=True, ratio_label='x cheaper',
                target=('ratio', '>=', TARGET)),
            common.figure(
                '6 memory per cached row', cache_bytes / float(count),
                'bytes/row', dict_bytes / float(count),
                'plain dict of dicts'),
        ],
        'data': {'rows': count, 'view_seconds': view_s,
                 'deepcopy_seconds': deep, 'cache_bytes': cache_bytes,
                 'dict_bytes': dict_bytes},
    }


def plot(result, plt):
    data = result['data']
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    values = [data['view_seconds'] * 1e6,
              common.median(data['deepcopy_seconds']) * 1e6]
    # Six orders of magnitude apart: points on a log axis (bars on a log
    # axis would start at an arbitrary floor), each value written out.
    left.scatter([0, 1], values, color=['tab:green', 'tab:gray'], s=60,
                 zorder=3)
    for i, value in enumerate(values):
        left.annotate('%.3g us' % value, (i, value),
                      textcoords='offset points', xytext=(8, 0),
                      fontsize=8, va='center')
    left.set_xticks([0, 1])
    left.set_xticklabels(['view()', 'copy.deepcopy'])
    left.set_xlim(-0.5, 1.8)
    left.set_yscale('log')
    left.set_ylabel('microseconds (log scale)')
    left.set_title('Taking a consistent view of %s rows\n'
                   '(microseconds, log scale)' % '{:,}'.format(data['rows']))
    right.bar(['cache', 'dict of dicts'],
              [data['cache_bytes'] / data['rows'],
               data['dict_bytes'] / data['rows']],
              color=['tab:green', 'tab:gray'])
    right.set_ylim(bottom=0)
    right.set_ylabel('bytes per row')
    right.set_title('Memory per row, tracemalloc (bytes)')
    fig.tight_layout()
    return {'readers.png': fig}
