# Set up a fresh machine and run bayes-t2. `make demo` and `make test` are all a user needs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-all bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || "$$(bash .ci/find-python)" -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/bayes-t2 demo --out reports/demo

test: setup
	$(PY) -m pytest -q -m "not slow"

test-all: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m pip install --quiet -e ".[scale]"
	$(PY) benchmarks/bench_optimizer.py
	$(PY) benchmarks/bench_decide.py
	$(PY) benchmarks/bench_sampling.py
	$(PY) benchmarks/bench_scale.py

clean:
	rm -rf $(VENV) reports/demo
