# The README's quick start: `make demo` runs the default matrix, `make test` runs the tests.
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= configs/default.yaml

.PHONY: demo test lint setup infra clean

demo: infra
	$(BIN)/basebench run $(CONFIG)

# Two workers, one test file each at a time: most of an integration test is waiting on
# containers, registries and servers, so two files overlap well on two cores.
test: infra
	sh infra/bootstrap.sh --test
	$(BIN)/pytest -q -n 2 --dist loadfile --durations=15

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Docker engine, local registry, forged base images and the Trivy fixture DB.
infra: setup
	$(BIN)/basebench infra up --config $(CONFIG)

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt infra/bootstrap.sh tasks/programs.tsv
	sh infra/bootstrap.sh
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) results
