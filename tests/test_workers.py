"""tokenizer/workers.py: tasks shared out to worker processes come back complete, in order, and a
worker's failure (an exception, or the process dying) is raised here."""
import os
import time

import pytest

from nanostack.tokenizer.workers import map_tasks, share_work


def square(shared, task):
    if task == shared:
        raise ValueError(f"task {task} failed")
    return [task * task] * 1000


def two_megabytes(shared, task):
    return bytes([task]) * 2_000_000  # more than a widened pipe holds: the worker waits while it is read


def die_unless_parent(parent, task):
    if os.getpid() != parent:
        os._exit(3)
    time.sleep(0.02)  # slow here, so that the worker takes a task (and dies) long before the last one
    return task


def sum_tasks(shared, tasks):
    return sum(tasks)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_map_tasks_returns_every_result_in_task_order(workers):
    assert map_tasks(square, None, 200, workers) == [[t * t] * 1000 for t in range(200)]


def test_results_larger_than_the_pipe_come_back_whole():
    assert map_tasks(two_megabytes, None, 6, 2) == [bytes([t]) * 2_000_000 for t in range(6)]


def test_a_workers_exception_is_raised_here():
    with pytest.raises(ValueError, match="task"):
        map_tasks(square, 150, 200, 3)  # task 150 fails in whichever process takes it


def test_a_worker_that_dies_is_an_error_not_a_hang():
    with pytest.raises(RuntimeError, match="died"):
        map_tasks(die_unless_parent, os.getpid(), 200, 2)


def test_share_work_gives_each_process_its_tasks():
    assert sum(share_work(sum_tasks, None, 100, 3)) == sum(range(100))
