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
	$(BIN)/trustgate certs generate --out certs --service trustgate --namespace trustgate \
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
# for the audits of kustomizations.
test-deps: registry-deps
	@command -v redis-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }
	@command -v kubectl >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client; }

test: $(TEST_STAMP) test-deps lint typecheck
	$(BIN)/python -m pytest

bench: $(TEST_STAMP) test-deps
	command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(BIN)/python bench/run.py
	$(BIN)/python bench/signatures.py
	$(BIN)/python bench/keyless.py
	$(BIN)/python bench/bundles.py
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

# The container image, built without a daemon: buildah (Debian: apt-get install buildah),
# else podman. The base image comes from a registry (BASE_IMAGE, default UBI 9 Python 3.11);
# docs/install.md says how to build, check and push it.
IMAGE      ?= quay.io/trustgate/trustgate
IMAGE_TAG  ?= $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}/\1/p' charts/trustgate/Chart.yaml)
BASE_IMAGE ?= registry.access.redhat.com/ubi9/python-311:latest
# More flags for the builder, e.g. a proxy's CA for pip: --volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro --volume $(PWD)/pip.conf:/etc/pip.conf:ro
IMAGE_BUILD_FLAGS ?=
BUILDER    ?= $(shell command -v buildah >/dev/null && echo buildah || { command -v podman >/dev/null && echo podman; })

.PHONY: image
image:
	@test -n "$(BUILDER)" || { echo "make image needs buildah or podman (apt-get install buildah)" >&2; exit 2; }
	$(BUILDER) build --layers --build-arg BASE_IMAGE=$(BASE_IMAGE) $(IMAGE_BUILD_FLAGS) -f Containerfile -t $(IMAGE):$(IMAGE_TAG) .
	@echo "built $(IMAGE):$(IMAGE_TAG); push it with: $(BUILDER) push $(IMAGE):$(IMAGE_TAG)"
