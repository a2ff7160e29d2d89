# The README's two commands: `make demo` and `make test`. Everything else is set-up they call.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test validate validation-report demo bench bench-smoke clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

validate: $(STAMP)
	$(PY) -m pytest -q -m 'validate or slow' -p no:cacheprovider

# Re-samples every posteriordb port and rewrites docs/validation.md (1-2 hours on 2 cores).
validation-report: $(STAMP)
	$(PY) bench/validation_report.py

# Starts exmc@127.0.0.14 from the config (a separate process, exmc preloaded, pool warm), runs the
# seed demo as livebook@127.0.0.13, and stops the cluster also on failure or Ctrl-C.
demo: $(STAMP)
	$(PY) -m livebook_client.cluster_demo --config configs/cluster.toml

bench: $(STAMP)
	$(PY) bench/erpc_bench.py
	$(PY) bench/logp_bench.py
	$(PY) bench/sampler_bench.py
	$(PY) bench/demo_bench.py
	$(PY) bench/cluster_bench.py

# CI's smoke run of every benchmark: tiny sizes, exmc/pynode only, checks that they still run.
bench-smoke: $(STAMP)
	$(PY) bench/erpc_bench.py --quick --no-beam
	$(PY) bench/logp_bench.py --quick
	$(PY) bench/sampler_bench.py --quick
	$(PY) bench/demo_bench.py --smoke
	$(PY) bench/cluster_bench.py --quick

clean:
	rm -rf $(VENV) build *.egg-info
