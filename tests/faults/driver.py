"""Run the nanostack CLI with a fault injected at the Nth write: the test suite's fault injector.

    python tests/faults/driver.py MODE N COUNT_FILE -- nanostack arguments...

MODE: count (inject nothing; write the number of write events to COUNT_FILE), kill (SIGKILL this
process just before write event N: a crash at that exact moment; a metrics line is cut in half
first), enospc (write event N fails with "No space left on device"). A write event is any call that
changes files: os.replace/rename, shutil.rmtree, torch.save, a safetensors save, write_atomic and
write_json, and the trainer's metrics writes. Lives in tests/: nanostack itself has no fault hooks.
"""
import errno
import os
import shutil
import signal
import sys

MODE, TARGET, COUNT_FILE = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ARGS = sys.argv[sys.argv.index("--") + 1:]
events = 0


def fault(name: str, path=None, partial_write=None):
    global events
    events += 1
    if MODE == "count":
        with open(COUNT_FILE, "a") as f:
            f.write(f"{events} {name}\n")
        return
    if events != TARGET:
        return
    if MODE == "kill":
        if partial_write is not None:
            partial_write()
        os.kill(os.getpid(), signal.SIGKILL)
    if MODE == "enospc":
        raise OSError(errno.ENOSPC, "No space left on device", str(path) if path else None)


def wrap(name, function, path_arg=0):
    def wrapped(*args, **kwargs):
        fault(name, args[path_arg] if len(args) > path_arg else None)
        return function(*args, **kwargs)
    wrapped.__wrapped_fault__ = function
    return wrapped


def wrap_metric(function):
    def wrapped(file, record):
        def half():
            import json
            file.write(json.dumps(record)[:10])
            file.flush()
        fault("metric", getattr(file, "name", None), partial_write=half)
        return function(file, record)
    return wrapped


def install():
    import torch

    import nanostack.cli  # noqa: F401
    import nanostack.data.examples  # noqa: F401
    import nanostack.data.shards  # noqa: F401
    import nanostack.evaluate  # noqa: F401
    import nanostack.io as nio
    import nanostack.models.engines as engines
    import nanostack.run.folder  # noqa: F401
    import nanostack.sample  # noqa: F401
    import nanostack.train.trainer as trainer

    originals = {"write_atomic": nio.write_atomic, "write_json": nio.write_json}
    replacements = {id(f): wrap(name, f) for name, f in originals.items()}
    for module in [m for n, m in sys.modules.items() if n.startswith("nanostack") and m is not None]:
        for attr, value in list(vars(module).items()):
            if id(value) in replacements and any(value is f for f in originals.values()):
                setattr(module, attr, replacements[id(value)])
    engines.save_model = wrap("save_model", engines.save_model, 1)
    engines.save_numpy_weights = wrap("save_numpy_weights", engines.save_numpy_weights, 1)
    trainer.write_metric = wrap_metric(trainer.write_metric)
    torch.save = wrap("torch.save", torch.save, 1)
    os.replace = wrap("os.replace", os.replace)
    os.rename = wrap("os.rename", os.rename)
    shutil.rmtree = wrap("rmtree", shutil.rmtree)


if __name__ == "__main__":
    install()
    from nanostack.cli import main

    sys.exit(main(ARGS))
