# The two commands of the README. Each bootstraps .venv itself on a machine with only python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test clean

# (Re)install when pyproject.toml changes; the stamp records a completed install.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

## demo: create the environment and run the main job on its defaults
demo: $(STAMP)
	$(BIN)/visiontune search mnist --space mnist-cnn --trials 8 --max-epochs 2

## test: create the environment if needed and run the test suite
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
