# tuneforge developer commands. `make demo` and `make test` are the two commands of the README.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TEST_WORKERS ?= 2

.PHONY: install demo test test-fast lint docs clean

install: $(VENV)/.installed

# torch goes first, pinned to the CPU build that lies on this machine's disk: a plain `torch`
# requirement would make pip download a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install torch==2.13.0
	$(PIP) install -e ".[dev]"
	touch $@

demo: install
	$(PY) examples/quickstart/run.py

test: install
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -n $(TEST_WORKERS) tests

# the developer tier: everything but the end-to-end runs marked slow
test-fast: install
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -n $(TEST_WORKERS) -m "not slow" tests

lint: install
	$(VENV)/bin/ruff check src tests scripts bench data

docs: install
	$(PY) scripts/gen_parameters_doc.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
