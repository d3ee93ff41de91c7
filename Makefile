# Scanflow for Jupyter — every target a newcomer needs. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JSENV := PATH=$(abspath $(BIN)):$$PATH
LABEXT := $(VENV)/share/jupyter/labextensions/scanflow-jupyter
TUTORIAL := tutorials/mnist/mnist.ipynb
EXAMPLES := notebooks/linear_chain.ipynb notebooks/diamond.ipynb notebooks/parameterised.ipynb

.DEFAULT_GOAL := help
.PHONY: help install run run-examples setup-test test lint format unit integration bad-inputs nbval contracts golden bench docker base-image clean k8s-build k8s-up k8s-down js lab jest galata js-clean

help: ## List every target
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { echo "installing python3-venv (Debian)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install scanflow-jupyter with test tools

run: $(STAMP) ## Set up, then play the tutorial's story: train -> serve -> drift -> agents retrain -> hot swap
	$(BIN)/python scripts/run_tutorial.py

run-examples: $(STAMP) ## Run the small example notebooks as pipelines
	@for nb in $(EXAMPLES); do echo "== scanflow run $$nb"; $(BIN)/scanflow run $$nb || exit $$?; done

setup-test: $(STAMP) ## Install/build what the tests need: apt packages, Docker Engine, Go, test cluster, Galata deps
	scripts/setup-test.sh

test: setup-test lint js ## Set up everything, then run every test (nbval; unit, integration, bad inputs, server; Jest; Galata)
	$(BIN)/pytest -q --nbval-lax notebooks/ tutorials/
	$(BIN)/pytest -q tests/unit tests/integration tests/bad_inputs tests/server
	cd labextension && $(JSENV) jlpm test
	cd labextension/ui-tests && $(JSENV) jlpm install && $(JSENV) jlpm test

unit: $(STAMP) ## Unit tests only
	$(BIN)/pytest -q tests/unit

integration: $(STAMP) ## Integration tests (real kernels, real MLflow store)
	$(BIN)/pytest -q tests/integration

bad-inputs: $(STAMP) ## The broken-notebook suite
	$(BIN)/pytest -q tests/bad_inputs

nbval: $(STAMP) ## Execute the example notebooks top to bottom in a live kernel
	$(BIN)/pytest -q --nbval-lax notebooks/ tutorials/

lint: $(STAMP) ## ruff check
	$(BIN)/ruff check scanflow_jupyter tests scripts

format: $(STAMP) ## ruff format + autofix
	$(BIN)/ruff format scanflow_jupyter tests scripts
	$(BIN)/ruff check --fix scanflow_jupyter tests scripts

contracts: $(STAMP) ## Regenerate labextension/src/contracts.generated.ts from the pydantic contracts
	$(BIN)/python -m scanflow_jupyter.contracts ts

golden: $(STAMP) ## Regenerate golden step notebooks after an intended change
	$(BIN)/python scripts/regen_golden.py
	$(BIN)/python scripts/regen_k8s_golden.py
	$(BIN)/python scripts/regen_argo_golden.py

bench: $(STAMP) ## Benchmarks (ratios against baselines measured in the same run)
	$(BIN)/python -m tests.benchmarks.run_all $(BENCH_ARGS)

docker: ## Make a Docker Engine answer (installs docker.io, mmdebstrap, docker-registry if missing; starts dockerd)
	scripts/docker-up.sh

base-image: $(STAMP) docker ## Build the offline base image for machines without a registry (cached by tag)
	$(BIN)/scanflow build-base

k8s-build: ## Build the local Kubernetes control plane from the Go module proxy (cached in ~/.cache/scanflow/k8s)
	PATH="$$PATH:/usr/local/go/bin" tests/k8s/cluster.sh build

k8s-up: k8s-build ## Start the local Kubernetes control plane (prints export KUBECONFIG=...)
	tests/k8s/cluster.sh up

k8s-down: ## Stop the local Kubernetes control plane and remove its run dir
	tests/k8s/cluster.sh down

js: $(STAMP) ## Build the JupyterLab extension (dev) and link it into the venv
	cd labextension && $(JSENV) jlpm install && $(JSENV) jlpm build
	rm -rf $(LABEXT) && ln -s $(abspath scanflow_jupyter/labextension) $(LABEXT)

lab: js ## Start JupyterLab with the Scanflow sidebar, opened on the tutorial
	$(BIN)/jupyter lab $(TUTORIAL)

jest: $(STAMP) ## Jest unit tests of the JupyterLab extension
	cd labextension && $(JSENV) jlpm install && $(JSENV) jlpm test

galata: js ## Browser tests of the sidebar (Galata + Debian's /usr/bin/chromium)
	cd labextension/ui-tests && $(JSENV) jlpm install && $(JSENV) jlpm test

js-clean: ## Remove the JS build outputs (do this before building a wheel)
	cd labextension && $(JSENV) jlpm clean

clean: ## Remove the venv, caches and local run data
	rm -rf $(VENV) .scanflow .pytest_cache .ruff_cache build dist *.egg-info
