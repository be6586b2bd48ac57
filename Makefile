# facesegm: the two commands a new user runs are `make course` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
OUT    ?= outputs
PROFILE ?= quick

.PHONY: course test lint format lab install clean help

help:
	@echo "make course  - install, generate synthetic faces, run every notebook (quick profile) into $(OUT)/"
	@echo "make test    - install, then run the unit tests and every notebook under pytest"
	@echo "make lab     - open JupyterLab on notebooks/"
	@echo "make lint    - ruff check and format check"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependency list changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (facesegm)"
	touch $(STAMP)

install: $(STAMP)

course: $(STAMP)
	$(BIN)/facesegm course --profile $(PROFILE) --out $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf $(OUT) .pytest_cache
