# facesegm: the two commands a new user runs are `make course` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
KERNEL := $(VENV)/share/jupyter/kernels/python3/kernel.json
OUT    ?= outputs
RUN    ?= $(OUT)/run
# the live page's JavaScript dependencies, installed exactly as locked (npm ci) when the lockfile changes
WEB    := web/node_modules/.package-lock.json
PROFILE ?= quick

.PHONY: course test lint format lab site install clean help web serve

help:
	@echo "make course  - install, generate synthetic faces, run every notebook (quick profile) into $(OUT)/"
	@echo "               (PROFILE=full, ARGS='--set EPOCHS=2 --data DIR' pass through to facesegm course)"
	@echo "make test    - install, then run the unit tests and every notebook under pytest"
	@echo "make lab     - JupyterLab on your working copies of the notebooks in lab/ (made on first use)"
	@echo "make site    - the executed notebooks of make course ($(OUT)/) as a static site in $(OUT)/site/"
	@echo "make lint    - ruff check and format check"
	@echo "make web     - install the live page's onnxruntime-web from web/package-lock.json (npm ci)"
	@echo "make serve   - the live recolour page for RUN (default outputs/run) on http://127.0.0.1:8000/"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependency list changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

# The notebooks' kernel. Its env sets TensorFlow's C++ log level for the kernel only (3: no INFO/WARNING/
# ERROR lines such as the cuInit message on CPU machines), so no module changes global state at import.
# TensorFlow's C++ lines logged before absl is initialised ignore that level: capture_fd_output=False
# sends the kernel's C-level stderr to the JupyterLab terminal instead of a pink box in the notebook.
# MPLBACKEND is the inline backend, as a kernel's default, even where the shell exports another (CI: Agg).
$(KERNEL): $(STAMP) Makefile
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (facesegm)" \
		--env TF_CPP_MIN_LOG_LEVEL 3 --env MPLBACKEND module://matplotlib_inline.backend_inline
	$(BIN)/python -c "import json, sys; k = json.load(open(sys.argv[1])); \
		k['argv'].append('--IPKernelApp.capture_fd_output=False'); json.dump(k, open(sys.argv[1], 'w'), indent=1)" $(KERNEL)

install: $(STAMP) $(KERNEL)

course: $(STAMP) $(KERNEL)
	$(BIN)/facesegm course --profile $(PROFILE) --out $(OUT) $(ARGS)

test: $(STAMP) $(KERNEL) $(WEB)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Working copies in lab/ (made on first use, never overwritten), so notebooks/ stays as committed;
# --allow-root is passed only when running as root (and said so). ARGS go to jupyter lab.
lab: $(STAMP) $(KERNEL)
	$(BIN)/python -m facesegm_utils.lab $(ARGS)

$(WEB): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --ignore-scripts
	touch $(WEB)

web: $(WEB)

serve: $(STAMP) $(WEB)
	$(BIN)/facesegm serve --model $(RUN) $(ARGS)

# The course as a site: renders what `make course` executed into $(OUT)/ (never re-executes) and says
# how to open it.
site: $(STAMP)
	$(BIN)/facesegm site --course $(OUT)

clean:
	rm -rf $(OUT) .pytest_cache
