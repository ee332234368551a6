"""Tokenizer work shared between this process and worker processes, one per usable core.

The work is a list of tasks (numbered 0..n-1). This process starts workers - 1 others and works
too; each process takes the next task not yet taken whenever it is free, so a process that a busy
neighbour slows simply takes fewer. With the fork start method (Linux) the workers inherit what
they need (a tokenizer and its chunk cache, the texts) instead of receiving it pickled; elsewhere
it is pickled to each worker once. Only results travel back, through a pipe, once per worker.

This module knows nothing about tokenizers: it runs work(shared, tasks) in each process.
"""
import gc
import os
from multiprocessing import current_process, get_all_start_methods, get_context


def usable_cores() -> int:
    """The cores this process may run on (a taskset or cgroup pinning counts), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def even_ranges(texts, n: int) -> list:
    """About n (start, stop) ranges of texts, each holding about as many characters."""
    total = sum(map(len, texts))
    ranges, start, filled = [], 0, 0
    for i, text in enumerate(texts):
        filled += len(text)
        if filled * n >= total * (len(ranges) + 1) or i == len(texts) - 1:
            ranges.append((start, i + 1))
            start = i + 1
    return ranges


def share_work(work, shared, n_tasks: int, workers: int, pack=None, unpack=None) -> list:
    """[work(shared, tasks) of each process, this one's first]: `tasks` yields task numbers, each
    to one process. A worker's result is sent as pack(result) and read back as unpack(it).
    work, pack and unpack must be module-level functions (spawn pickles them)."""
    workers = max(1, min(workers, n_tasks))
    if current_process().daemon:
        workers = 1  # a daemonic process (a multiprocessing.Pool worker, say) may not start processes
    ctx = get_context("fork" if "fork" in get_all_start_methods() else "spawn")
    counter = ctx.Value("q", 0) if workers > 1 else None
    started, finished = [], False
    try:
        for _ in range(workers - 1):
            receiver, sender = ctx.Pipe(duplex=False)
            process = ctx.Process(target=_worker, args=(work, shared, n_tasks, counter, sender, pack), daemon=True)
            process.start()
            sender.close()
            started.append((process, receiver))
        results = [work(shared, _take(counter, n_tasks))]
        for _, receiver in started:
            try:
                failed, result = receiver.recv()
            except EOFError:
                raise RuntimeError("a tokenizer worker process died") from None
            if failed:
                raise result
            results.append(unpack(result) if unpack else result)
        finished = True
        return results
    finally:
        for process, receiver in started:
            if not finished:
                process.terminate()  # this process failed, so nobody reads what the rest still compute
            process.join()
            receiver.close()


def _take(counter, n_tasks: int):
    """Task numbers not yet taken by any process, in order."""
    if counter is None:
        yield from range(n_tasks)
        return
    while True:
        with counter.get_lock():
            task = counter.value
            counter.value = task + 1
        if task >= n_tasks:
            return
        yield task


def _worker(work, shared, n_tasks, counter, sender, pack):
    gc.disable()  # the work builds no reference cycles, and a worker lives for one call
    try:
        result = work(shared, _take(counter, n_tasks))
        sender.send((False, pack(result) if pack else result))
    except BaseException as e:  # noqa: BLE001 (handed to the caller, who raises it)
        sender.send((True, e))
    finally:
        sender.close()
