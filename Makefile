# One command per target; `make help` lists them. Layout and layers: docs/architecture.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
CLUSTER_DIR := .cluster
NODES ?= 3
# Extra fake nodes with their own labels, space separated: name:key=value,key=value
NODE_SPECS ?=
PYTEST_ARGS ?=

# BENCH_SIZE=quick (default, ~15 min) or full (hours)
BENCH_SIZE ?= quick

.PHONY: bench help venv system-packages binaries helm promtool cluster cluster-down test lint demo demo-incluster demo-down run generate verify image bundle bundle-validate

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# Runtime dependencies from the hashed lock (tools/lock.py), the project without resolving
# anything, then the dev tools (they find the runtime dependencies already there).
$(INSTALLED): pyproject.toml requirements/image.lock tools/localcluster/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --no-deps --only-binary=:all: -r requirements/image.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]' -e tools/localcluster
	touch $@

venv: $(INSTALLED) ## Create the virtualenv and install the project with its dev tools

binaries: venv ## Build (first time, ~6 min on 2 cores) or reuse the control-plane binaries
	$(BIN)/localcluster build

cluster: venv ## Start or reuse the local control plane with NODES fake Intel nodes
	$(BIN)/localcluster --dir $(CLUSTER_DIR) up --nodes $(NODES) $(foreach spec,$(NODE_SPECS),--node $(spec))

cluster-down: venv ## Stop the local control plane and remove its state
	$(BIN)/localcluster --dir $(CLUSTER_DIR) down

helm: venv ## Build (first time, minutes) or reuse helm 4 and helm 3 for the chart tests
	$(BIN)/python tools/helm.py
	$(BIN)/python tools/helm.py --v3

promtool: venv ## Build (first time, see docs/install.md) or reuse promtool for the alert tests
	$(BIN)/python tools/promtool.py

bundle-validate: venv ## Build (first time, see docs/install.md) or reuse the OLM bundle validator
	$(BIN)/python tools/bundle_validate.py

system-packages: ## Debian packages for the image build and the real node (a no-op when present)
	sh tools/system-packages.sh

test: system-packages binaries helm promtool bundle-validate ## Unit, envtest, compat and e2e tests against real local clusters
	$(BIN)/pytest $(PYTEST_ARGS)

lint: venv ## ruff, mypy --strict, import-linter
	$(BIN)/ruff check src tests tools bench
	$(BIN)/ruff format --check src tests tools bench
	$(BIN)/mypy
	$(BIN)/lint-imports

demo: binaries ## Local cluster + CRDs + operator + every sample; waits for READY == DESIRED
	$(BIN)/python tools/demo.py up --nodes $(NODES)

demo-incluster: system-packages binaries ## Like demo, but the operator image runs as 2 pods on a real kubelet node
	$(BIN)/python tools/demo.py up-incluster --nodes $(NODES)

demo-down: venv ## Stop what make demo or make demo-incluster started
	$(BIN)/python tools/demo.py down

run: venv ## Run the operator from source against the current KUBECONFIG
	$(BIN)/deviceplugin-operator run $(RUN_ARGS)

generate: venv ## Regenerate CRDs, RBAC and webhook manifests and the docs' generated blocks
	$(BIN)/python -m deviceplugin_operator.manifests write deployments/operator
	$(BIN)/python tools/docs.py write

verify: venv ## Fail when the generated manifests, docs blocks, OLM bundle or lock files are stale
	$(BIN)/python -m deviceplugin_operator.manifests check deployments/operator
	$(BIN)/python tools/docs.py check
	$(BIN)/python -m deviceplugin_operator.manifests.olm check
	$(BIN)/python tools/lock.py check

bundle: venv ## Regenerate the OLM bundle (bundle/) from the code and deployments/operator
	$(BIN)/python -m deviceplugin_operator.manifests.olm write

IMAGE ?= docker.io/intel/intel-deviceplugin-operator-py:devel
# docker, podman or buildah; empty: docker if its daemon answers, else podman, else buildah
IMAGE_ENGINE ?=
image: ## Build $(IMAGE) (docker, else podman/buildah; reused while its inputs are unchanged)
	$(PYTHON) tools/image.py build --image $(IMAGE) $(if $(IMAGE_ENGINE),--engine $(IMAGE_ENGINE))

bench: binaries ## Benchmarks vs the reference operator and a floor (BENCH_SIZE=quick|full)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	$(BIN)/python -m bench --size $(BENCH_SIZE)
