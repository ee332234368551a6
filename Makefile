# The README's commands. `make demo` trains and samples; `make test` runs the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHARED_DATA := $(abspath ../shared/data)
# tests read tinyshakespeare.txt / names.txt from here instead of downloading them
TEST_DATA := $(if $(wildcard $(SHARED_DATA)),NANOSTACK_DATA_DIR=$(SHARED_DATA),)

.PHONY: demo test bench clean chromium graphviz

$(BIN)/nanostack: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --editable '.[test]'
	touch $@

demo: $(BIN)/nanostack
	$(BIN)/nanostack train --config cpu_small --out runs/demo --force
	$(BIN)/nanostack sample runs/demo --max-new-tokens 500

# the page's tests drive Debian's Chromium (Playwright's own browser download needs the internet);
# grad's graph drawing test renders with graphviz's dot
SUDO := $(if $(filter 0,$(shell id -u)),,sudo -n)
chromium:
	@command -v chromium >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || \
		$(SUDO) apt-get install -y -q chromium || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; } || \
		echo "could not install chromium: the browser tests will skip"

graphviz:
	@command -v dot >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || \
		$(SUDO) apt-get install -y -q graphviz || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q graphviz; } || \
		echo "could not install graphviz: the graph drawing test will skip"

test: $(BIN)/nanostack chromium graphviz
	$(TEST_DATA) $(BIN)/python -m pytest -q

bench: $(BIN)/nanostack
	$(TEST_DATA) $(BIN)/python bench/train_cpu_small.py
	$(TEST_DATA) $(BIN)/python bench/sample_speed.py
	$(BIN)/python bench/moons.py
	$(BIN)/python bench/grad_step.py
	$(TEST_DATA) $(BIN)/python bench/bpe.py
	$(TEST_DATA) $(BIN)/python bench/serve_load.py
	$(TEST_DATA) $(BIN)/python bench/dataengine.py
	$(TEST_DATA) $(BIN)/python bench/recipe.py
	$(TEST_DATA) $(BIN)/python bench/cli_start.py
	$(BIN)/python bench/chat_arithmetic.py

clean:
	rm -rf $(VENV) runs *.egg-info
