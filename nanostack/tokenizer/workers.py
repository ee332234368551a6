"""Tokenizer work spread over worker processes, one per core this process may use.

With the fork start method (Linux) the workers inherit what they need (a tokenizer and its chunk
cache, a list of texts) from the caller's memory instead of receiving it pickled; elsewhere it is
pickled to each worker once. This module knows nothing about tokenizers: it runs
func(shared, task) for each task and hands back the results.
"""
import gc
import os
from multiprocessing import get_all_start_methods, get_context

_func = None
_shared = None


def usable_cores() -> int:
    """The cores this process may run on (a taskset or cgroup pinning counts), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_in_workers(func, shared, tasks, workers: int, ordered=True):
    """Yield func(shared, task) for each task, computed in `workers` processes; in task order if
    `ordered`, else as they finish. func must be a module-level function (spawn pickles it)."""
    method = "fork" if "fork" in get_all_start_methods() else "spawn"
    # Objects that exist now are moved out of the collector's sight while the workers fork, so a
    # collection in a worker does not write to (and so copy) every page of the inherited heap.
    gc.freeze()
    try:
        pool = get_context(method).Pool(workers, initializer=_start_worker, initargs=(func, shared))
    finally:
        gc.unfreeze()
    with pool:
        yield from (pool.imap if ordered else pool.imap_unordered)(_run_task, tasks)


def _start_worker(func, shared):
    global _func, _shared
    _func, _shared = func, shared
    gc.disable()  # the work builds no reference cycles; a worker lives for one call


def _run_task(task):
    return _func(_shared, task)
