# The README's two commands: `make demo` and `make test`. Everything else is set-up they call.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test validate validation-report demo demo-elixir bench bench-smoke soak clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	# numba compiles exmc's tree kernel once per checkout (~20 s) into its on-disk cache: here, not
	# in the first sampling of `make demo` or inside the first test's pool workers.
	# The same for the compiled gradient kernels (exmc.accel, ~5 s).
	$(PY) -c "from exmc.nuts import tree_numba; tree_numba.warm_up(); from exmc import accel; accel.warm_up()"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

validate: $(STAMP)
	$(PY) -m pytest -q -m 'validate or slow' -p no:cacheprovider

# pynode's long fault runs: 100,000 soaked calls (the default run soaks 10,000), and the rest of
# the slow-marked fault tests.
soak: $(STAMP)
	$(PY) -m pytest -q -s -m slow tests/integration/test_fault_suite.py tests/integration/test_tls_cluster.py

# Re-samples every posteriordb port and rewrites docs/validation.md (1-2 hours on 2 cores).
validation-report: $(STAMP)
	$(PY) bench/validation_report.py

# Starts exmc@127.0.0.14 from the config (a separate process, exmc preloaded, pool warm), runs the
# seed demo as livebook@127.0.0.13, and stops the cluster also on failure or Ctrl-C.
demo: $(STAMP)
	$(PY) -m livebook_client.cluster_demo --config configs/cluster.toml

# The seed notebook as Elixir code (examples/seed.exs) against the Python exmc node: starts
# exmc@127.0.0.14 from the config, runs the script with `elixir` (apt-get install elixir), stops all.
demo-elixir: $(STAMP)
	$(PY) -m livebook_client.elixir_demo --config configs/cluster.toml

bench: $(STAMP)
	$(PY) bench/erpc_bench.py --tls
	$(PY) bench/logp_bench.py
	$(PY) bench/sampler_bench.py
	$(PY) bench/demo_bench.py
	$(PY) bench/beam_bench.py
	$(PY) bench/cluster_bench.py

# CI's smoke run of every benchmark: tiny sizes, exmc/pynode only, checks that they still run.
bench-smoke: $(STAMP)
	$(PY) bench/erpc_bench.py --quick --no-beam --tls
	$(PY) bench/logp_bench.py --quick
	$(PY) bench/sampler_bench.py --quick
	$(PY) bench/demo_bench.py --smoke
	$(PY) bench/cluster_bench.py --quick

clean:
	rm -rf $(VENV) build *.egg-info
