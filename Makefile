# The two commands of a fresh machine: `make run` (the whole DAG on the embedded synthetic
# default) and `make test` (the test suite, lint and types included).
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run study paper-config test test-fast lint mutation mlflow-ui clean image image-test

UV_VERSION ?= 0.13.9

# uv installs everything, torch included. uv reads no pip.conf, so the wheel folder of pip's
# configuration (scripts/pip-setting.sh) is passed on as --find-links: pinned, torch is then the
# CPU build from that folder. A fresh clone, cold uv cache, 2-core machine: 35 s, against 46 s
# with torch from pip and 142 s with pip alone (docs/performance.md). pip installs everything
# where uv cannot be installed or cannot install.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	links="$$(PIP=$(BIN)/pip scripts/pip-setting.sh find-links)"; \
	  flags=""; for l in $$links; do l="$${l#file://}"; [ -e "$$l" ] && flags="$$flags --find-links $$l"; done; \
	  { $(BIN)/pip install -q uv==$(UV_VERSION) && \
	    $(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python $$flags -c constraints.txt \
	      torch==2.13.0 -e '.[dev]'; } || \
	  { $(BIN)/pip install -q --upgrade pip && $(BIN)/pip install -q torch==2.13.0 && \
	    $(BIN)/pip install -q -c constraints.txt -e '.[dev]'; }
	touch $(STAMP)

setup: $(STAMP)

# The stages call `dynpath` by name: put the venv first on PATH (no activation needed).
run: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro
	$(BIN)/dynpath report --summary

# The ablation study (docs/study.md): profile `study` in ./study, resumable (rerun to continue);
# its summary is copied to docs/study/summary.json, the file the docs cite.
study: $(STAMP)
	$(BIN)/dynpath study --profile study --dir study
	mkdir -p docs/study && cp study/reports/summary.json docs/study/summary.json

# The paper's configuration on the synthetic data (docs/study.md), resumable, in runs/paper-config.
paper-config: $(STAMP)
	$(BIN)/dynpath study --profile synthetic_paper --dir runs/paper-config

lint: $(STAMP)
	$(BIN)/ruff check src tests components pipeline
	$(BIN)/ruff format --check src tests components pipeline
	$(BIN)/mypy

test: $(STAMP) lint
	$(BIN)/pytest -q

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow" -n auto

# Mutation testing of the equations (docs/testing.md); slow, not part of `make test` or CI.
# `make mutation MUTANTS='dynpath.model.loss*'` restricts it to some mutants; mutmut resumes
# where it stopped and re-tests only what changed. Results: `$(BIN)/mutmut results`.
MUTANTS ?=
MUTATION_JOBS ?= 2
mutation: $(STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 19 $(BIN)/mutmut run --max-children $(MUTATION_JOBS) $(MUTANTS)
	$(BIN)/mutmut results

# The CPU image, tagged dynpath:cpu, with docker, podman or buildah (infra/docker/build.sh:
# the local base and wheel folder where no registry is reachable; docs/cluster.md, step 1).
# `make image-test` runs the CLI and the tiny DAG inside it (tests/test_container_run.py).
image:
	infra/docker/build.sh cpu

image-test: $(STAMP)
	DYNPATH_CONTAINER_TESTS=1 $(BIN)/pytest -q -m slow tests/test_container_run.py tests/test_mlflow_image.py

# Prints the address of each experiment's training runs first: MLflow 3.17's UI opens an
# experiment on its GenAI overview unless the address asks for the model-training workflow.
mlflow-ui: $(STAMP)
	$(BIN)/python -m dynpath.tracking.ui --store mlflow.db --url http://127.0.0.1:5000
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --port 5000

clean:
	rm -rf reports outputs mlflow.db mlartifacts mutants
