# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv demo test lint bench clean

$(BIN)/smsgw: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(BIN)/smsgw

demo: venv
	$(BIN)/python scripts/demo.py

test: venv
	scripts/ensure-system-packages
	$(BIN)/ruff check daemon modem store tests scripts
	$(BIN)/mypy
	$(BIN)/pytest

bench: venv
	for b in utilisation intake pick idle inbound slots; do $(BIN)/python scripts/bench.py $$b || exit 1; done

clean:
	rm -rf $(VENV) demo-run
