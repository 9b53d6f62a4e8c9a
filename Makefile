# trustgate: `make run` starts the webhook locally, `make demo` tours it offline,
# `make test` checks everything.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8443
# Two stamps per version of pyproject.toml: the runtime (make run, make demo) and the
# test tools on top of it (make test). Editing pyproject.toml reinstalls both.
HASH       := $(shell cksum < pyproject.toml | cut -d' ' -f1)
RUN_STAMP  := $(VENV)/.installed-run-$(HASH)
TEST_STAMP := $(VENV)/.installed-test-$(HASH)
# A new venv borrows $(PYTHON)'s pip when it has one that can install elsewhere
# (--python, pip >= 22.3): creating a venv without its own pip is seconds faster.
PIP        := $$(test -x $(BIN)/pip && echo $(BIN)/python -m pip \
		|| echo $(PYTHON) -m pip --python $(BIN)/python)

.PHONY: install install-test run demo test test-deps registry-deps lint typecheck bench soak schema clean

install: $(RUN_STAMP)

install-test: $(TEST_STAMP)

$(RUN_STAMP): pyproject.toml
	@test -x $(BIN)/python || { echo "==> creating $(VENV)"; \
		$(PYTHON) -m venv --without-pip $(VENV) && \
		{ $(PYTHON) -m pip --python $(BIN)/python --version >/dev/null 2>&1 || \
		  $(BIN)/python -m ensurepip --default-pip >/dev/null; }; }
	@echo "==> installing trustgate and its runtime dependencies into $(VENV)"
	@$(PIP) install --progress-bar on -e .
	@rm -f $(VENV)/.installed-run-* $(VENV)/.installed-test-*
	@touch $@

$(TEST_STAMP): $(RUN_STAMP)
	@echo "==> installing the test tools (pytest, ruff, mypy, Helm) into $(VENV)"
	@$(PIP) install --progress-bar on -e '.[test]'
	@rm -f $(VENV)/.installed-test-*
	@touch $@

certs/tls.crt certs/tls.key: | $(RUN_STAMP)
	$(BIN)/trustgate certs generate --out certs --service trustgate --namespace trustgate-system \
		--san localhost --san $(HOST)

run: $(RUN_STAMP) certs/tls.crt
	@echo "==> serving policies/ on https://$(HOST):$(PORT) (CA: certs/ca.crt); Ctrl-C stops it"
	$(BIN)/trustgate serve --policies policies --cert certs/tls.crt --key certs/tls.key \
		--host $(HOST) --port $(PORT)

demo: $(RUN_STAMP) registry-deps
	$(BIN)/python -m webhook.cli.demo

lint: $(TEST_STAMP)
	$(BIN)/ruff check webhook tests bench
	$(BIN)/ruff format --check webhook tests bench
	$(BIN)/lint-imports

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

# Debian's docker-registry: the OCI registry of the demo and the tests.
registry-deps:
	@command -v docker-registry >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry; }

# Redis for the shared-cache tests, besides the registry; kubectl (Debian's kubernetes-client)
# for the audits of kustomizations and the documents' `kubectl create` lines, and curl for
# the README's (tests/unit/test_readme.py runs the documents' commands).
test-deps: registry-deps
	@command -v redis-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }
	@command -v kubectl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client; }
	@command -v curl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl; }
	@# git and ssh-keygen make the SSH-signed commits of the Git-mode policy signature tests.
	@command -v git >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq git; }
	@command -v ssh-keygen >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-client; }
	@# The docker command line, for `make image`'s test (against a stand-in daemon; none runs here).
	@command -v docker >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io; }

test: $(TEST_STAMP) test-deps lint typecheck
	$(BIN)/python -m pytest

bench: $(TEST_STAMP) test-deps
	command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(BIN)/python bench/run.py
	$(BIN)/python bench/signatures.py
	$(BIN)/python bench/keyless.py
	$(BIN)/python bench/bundles.py
	$(BIN)/python bench/notation.py
	$(BIN)/python bench/freshness.py
	$(BIN)/python bench/mutate.py
	$(BIN)/python bench/waivers.py
	$(BIN)/python bench/shared_cache.py
	$(BIN)/python bench/herd.py

# Ten minutes of mixed reviews with the attacker mix beside them; SOAK_ARGS= (empty)
# soaks without attackers, SOAK_ARGS="--attackers --minutes 1" for a short run.
SOAK_ARGS ?= --attackers
soak: $(TEST_STAMP) test-deps
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

# The policy schema for editors, and the config part of the chart's values schema, made
# from the server's configuration schema (webhook/config/schema.py).
schema: $(RUN_STAMP)
	$(BIN)/trustgate policy schema > docs/policy.schema.json
	$(BIN)/python -m webhook.config.chartschema --write

clean:
	rm -rf $(VENV) certs/*.crt certs/*.key certs/*.pem .pytest_cache .mypy_cache .ruff_cache .import_linter_cache

# The container image: with buildah or podman (daemonless; Debian: apt-get install buildah,
# or podman), else with docker (its daemon must be running); the first of them on PATH, or
# BUILDER=docker (podman, buildah) to choose. .dockerignore is .containerignore. The base image comes from a registry
# (BASE_IMAGE, default UBI 9 Python 3.11); docs/install.md says how to build, check and
# push it, or load it into kind.
IMAGE      ?= quay.io/trustgate/trustgate
IMAGE_TAG  ?= $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}/\1/p' charts/trustgate/Chart.yaml)
BASE_IMAGE ?= registry.access.redhat.com/ubi9/python-311:latest
# More flags for the builder, e.g. a proxy's CA for pip (buildah and podman): --volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro --volume $(PWD)/pip.conf:/etc/pip.conf:ro
IMAGE_BUILD_FLAGS ?=
BUILDER    ?= $(firstword $(foreach tool,buildah podman docker,$(if $(shell command -v $(tool) 2>/dev/null),$(tool))))
# buildah and podman keep intermediate layers only when asked; docker always does.
LAYERS_buildah := --layers
LAYERS_podman  := --layers
# kind loads from docker's image store, or from an archive of what podman or buildah built.
KIND_LOAD = $(if $(filter docker,$(notdir $(BUILDER))),kind load docker-image $(IMAGE):$(IMAGE_TAG),$(BUILDER) push $(IMAGE):$(IMAGE_TAG) docker-archive:/tmp/trustgate.tar && kind load image-archive /tmp/trustgate.tar)

.PHONY: image
image:
	@test -n "$(BUILDER)" || { echo "make image needs docker, podman or buildah, and none is on PATH: install one (Debian: apt-get install podman), or name yours with BUILDER=" >&2; exit 2; }
	@test "$(notdir $(BUILDER))" != docker || $(BUILDER) info >/dev/null 2>&1 || { echo "make image: docker is installed but its daemon does not answer ($(BUILDER) info fails): start it (systemctl start docker), or build with podman or buildah (BUILDER=podman)" >&2; exit 2; }
	$(BUILDER) build $(LAYERS_$(notdir $(BUILDER))) --build-arg BASE_IMAGE=$(BASE_IMAGE) $(IMAGE_BUILD_FLAGS) -f Containerfile -t $(IMAGE):$(IMAGE_TAG) .
	@echo "built $(IMAGE):$(IMAGE_TAG); push it with: $(BUILDER) push $(IMAGE):$(IMAGE_TAG)"
	@echo "or load it into a kind cluster with: $(KIND_LOAD)"
