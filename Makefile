# The README's two commands: `make demo` and `make test`. Everything else is set-up they call.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test validate demo bench clean

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

demo: $(STAMP)
	@echo "make demo: not available yet (the seed demo lands with the livebook_client issue)" >&2
	@exit 1

bench: $(STAMP)
	$(PY) bench/erpc_bench.py

clean:
	rm -rf $(VENV) build *.egg-info
