"""The package's shape: layers import only from the layers below them (DESIGN.md's data flow), the
numpy twin loads no torch, and a wheel built from the repository (not an editable install) trains
with a preset and answers --help for every command."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nanostack"
# lowest first; a module may import from its own layer and the layers before it, never after
LAYERS = [("errors",), ("io", "cpu"), ("tokenizer", "grad"), ("data",), ("models",), ("run",), ("loss",),
          ("train", "sample", "evaluate", "interop"), ("chat",), ("dataengine",), ("recipe",), ("serve",),
          ("cli", "__main__")]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
# readers of run folders never reach into the training loop
MUST_NOT_IMPORT = {"sample": {"train"}, "evaluate": {"train"}, "run": {"train"}, "loss": {"train", "run"}}


def layer_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def nanostack_imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nanostack."):
            yield node.module.split(".")[1], node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("nanostack."):
                    yield alias.name.split(".")[1], node.lineno


def test_layers_import_only_downward():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        layer = layer_of(path)
        if layer == "__init__":
            continue
        assert layer in RANK, f"{path}: place the new layer {layer!r} in LAYERS"
        for imported, line in nanostack_imports(path):
            if imported == layer:
                continue
            if imported not in RANK:
                problems.append(f"{path}:{line} imports unknown nanostack.{imported}")
            elif RANK[imported] > RANK[layer] or imported in MUST_NOT_IMPORT.get(layer, ()):
                problems.append(f"{path.relative_to(PACKAGE)}:{line}: {layer} imports {imported}")
            elif RANK[imported] == RANK[layer] and layer not in ("cli", "__main__"):
                problems.append(f"{path.relative_to(PACKAGE)}:{line}: {layer} imports its peer {imported}")
    assert not problems, "\n".join(problems)


def test_the_numpy_twin_and_the_tokenizers_load_no_torch():
    code = ("import sys, nanostack.models.gpt_numpy, nanostack.models.mlp_numpy, nanostack.tokenizer, "
            "nanostack.run.config; print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr


def test_the_cli_parser_loads_neither_torch_nor_numpy():
    """`nanostack --help` and argument errors answer at once: building the parser of every command loads
    no torch, no numpy and no urllib (each takes a tenth of a second or more to import)."""
    code = ("import sys, nanostack.cli; nanostack.cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'numpy', 'urllib.request') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", (done.stdout, done.stderr)


@pytest.mark.slow
def test_a_wheel_install_has_its_presets_and_help(tmp_path, corpus):
    root = PACKAGE.parent
    isolation = []
    try:
        import setuptools  # noqa: F401
        import wheel  # noqa: F401
        isolation = ["--no-build-isolation"]  # the tools are here: build without fetching them
    except ImportError:
        pass
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *isolation,
                            "--wheel-dir", tmp_path / "dist", root], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "dist").glob("nanostack-*.whl"))
    site = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", site, wheel],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    env = {**os.environ, "PYTHONPATH": str(site)}

    def nanostack(*args):
        return subprocess.run([sys.executable, "-m", "nanostack", *map(str, args)], capture_output=True, text=True,
                              cwd=tmp_path, env=env, timeout=300)

    where = subprocess.run([sys.executable, "-c", "import nanostack; print(nanostack.__file__)"], cwd=tmp_path,
                           env=env, capture_output=True, text=True)
    assert where.stdout.startswith(str(site)), where.stdout  # the installed copy, not the repository's
    trained = nanostack("train", "--config", "cpu_small", "--data", corpus, "--out", tmp_path / "run", "--max-iters", 2,
                        "--eval-interval", 1, "--eval-iters", 1, "--ckpt-interval", 1, "--device", "cpu")
    assert trained.returncode == 0, trained.stderr
    for command in ("prepare", "train", "sample", "eval", "tokenizer", "tokenizer train", "tokenizer encode",
                    "tokenizer decode", "tokenizer show", "tokenizer stats"):
        shown = nanostack(*command.split(), "--help")
        assert shown.returncode == 0 and "usage: nanostack" in shown.stdout, (command, shown.stderr)
    help_text = nanostack("train", "--help").stdout
    assert all(name in help_text for name in ("cpu_small", "names", "names_10min", "shakespeare_char"))
