"""Tokenizer work shared between this process and worker processes, one per usable core.

The work is a list of tasks (numbered 0..n-1). This process starts workers - 1 others and works
too; each process takes the next task not yet taken whenever it is free, so a process that a busy
neighbour slows simply takes fewer. With the fork start method (Linux) the workers inherit what
they need (a tokenizer and its chunk cache, the texts) instead of receiving it pickled; elsewhere
it is pickled to each worker once. Only results travel back, through a pipe: once per worker
(share_work), or once per task (map_tasks).

This module knows nothing about tokenizers: it runs work(shared, tasks) in each process.
"""
import gc
import os
from contextlib import contextmanager
from multiprocessing import current_process, get_all_start_methods, get_context

try:
    import fcntl  # to widen pipes (Linux)
except ImportError:  # Windows
    fcntl = None


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
    with _workers(_worker, (work, shared, n_tasks, pack), n_tasks, workers) as (counter, receivers):
        results = [work(shared, _take(counter, n_tasks))]
        results += [_receive(receiver, unpack) for receiver in receivers]
        return results


def map_tasks(work, shared, n_tasks: int, workers: int, pack=None, unpack=None) -> list:
    """[work(shared, task) for task in range(n_tasks)], shared out as share_work does, except that a
    worker sends each result as soon as it has it, and this process reads (and unpacks) what has
    arrived after each of its own tasks: at the end only the last results are left to read."""
    results = [None] * n_tasks

    def collect(receiver, wait: bool) -> bool:
        """Store the results waiting in receiver (all of them, to the end, if wait); True once it ended."""
        while wait or receiver.poll():
            done = _receive(receiver, None)
            if done is None:
                return True
            task, result = done
            results[task] = unpack(result) if unpack else result
        return False

    with _workers(_task_worker, (work, shared, n_tasks, pack), n_tasks, workers) as (counter, receivers):
        for receiver in receivers:
            _widen(receiver, len(receivers))
        running = list(receivers)
        for task in _take(counter, n_tasks):
            results[task] = work(shared, task)
            running = [r for r in running if not collect(r, wait=False)]
        for receiver in running:
            collect(receiver, wait=True)
    return results


@contextmanager
def _workers(target, args, n_tasks: int, workers: int):
    """(task counter, [a pipe from each of workers - 1 processes running target(*args, counter, pipe)]);
    the processes are joined on the way out, and killed first if this process failed."""
    workers = max(1, min(workers, n_tasks))
    if current_process().daemon:
        workers = 1  # a daemonic process (a multiprocessing.Pool worker, say) may not start processes
    ctx = get_context("fork" if "fork" in get_all_start_methods() else "spawn")
    counter = ctx.Value("q", 0) if workers > 1 else None
    started, finished = [], False
    try:
        for _ in range(workers - 1):
            receiver, sender = ctx.Pipe(duplex=False)
            process = ctx.Process(target=target, args=(*args, counter, sender), daemon=True)
            process.start()
            sender.close()
            started.append((process, receiver))
        yield counter, [receiver for _, receiver in started]
        finished = True
    finally:
        for process, receiver in started:
            if not finished:
                process.terminate()  # this process failed, so nobody reads what the rest still compute
            process.join()
            receiver.close()


def _widen(receiver, pipes: int) -> None:
    """Let the pipe hold 1 MB (Linux; 64 KB by default), so a worker rarely waits for this process
    to read a result, and all the pipes together at most 16 MB (a user's pipes may hold 64 MB in
    all before Linux shrinks new ones); elsewhere, or where the system refuses, it stays as it is."""
    if hasattr(fcntl, "F_SETPIPE_SZ"):
        try:
            fcntl.fcntl(receiver.fileno(), fcntl.F_SETPIPE_SZ, max(1 << 16, min(1 << 20, (16 << 20) // pipes)))
        except OSError:  # above /proc/sys/fs/pipe-max-size
            pass


def _receive(receiver, unpack):
    try:
        failed, result = receiver.recv()
    except (EOFError, OSError):  # OSError: it died in the middle of sending a result
        raise RuntimeError("a tokenizer worker process died") from None
    if failed:
        raise result
    return unpack(result) if unpack else result


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


def _worker(work, shared, n_tasks, pack, counter, sender):
    gc.disable()  # the work builds no reference cycles, and a worker lives for one call
    try:
        result = work(shared, _take(counter, n_tasks))
        sender.send((False, pack(result) if pack else result))
    except BaseException as e:  # noqa: BLE001 (handed to the caller, who raises it)
        sender.send((True, e))
    finally:
        sender.close()


def _task_worker(work, shared, n_tasks, pack, counter, sender):
    """map_tasks' worker: (task, packed result) after each task, then None."""
    gc.disable()
    try:
        for task in _take(counter, n_tasks):
            result = work(shared, task)
            sender.send((False, (task, pack(result) if pack else result)))
        sender.send((False, None))
    except BaseException as e:  # noqa: BLE001 (handed to the caller, who raises it)
        sender.send((True, e))
    finally:
        sender.close()
