# trustgate: `make run` starts the webhook locally, `make test` checks everything.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
HOST   ?= 127.0.0.1
PORT   ?= 8443

.PHONY: install run test test-deps lint typecheck unit bench soak schema clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

certs/tls.crt certs/tls.key: | $(STAMP)
	$(BIN)/trustgate certs generate --out certs --service trustgate --namespace trustgate \
		--san localhost --san $(HOST)

run: $(STAMP) certs/tls.crt
	$(BIN)/trustgate serve --policies policies --cert certs/tls.crt --key certs/tls.key \
		--host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check webhook tests bench
	$(BIN)/ruff format --check webhook tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

test-deps:
	command -v docker-registry >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry; }
	command -v redis-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }

test: $(STAMP) test-deps lint typecheck
	$(BIN)/python -m pytest

bench: $(STAMP) test-deps
	command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(BIN)/python bench/run.py
	$(BIN)/python bench/signatures.py
	$(BIN)/python bench/keyless.py
	$(BIN)/python bench/bundles.py
	$(BIN)/python bench/freshness.py
	$(BIN)/python bench/mutate.py
	$(BIN)/python bench/waivers.py
	$(BIN)/python bench/shared_cache.py

soak: $(STAMP) test-deps
	$(BIN)/python bench/soak.py

schema: $(STAMP)
	$(BIN)/trustgate policy schema > docs/policy.schema.json

clean:
	rm -rf $(VENV) certs/*.crt certs/*.key certs/*.pem .pytest_cache .mypy_cache .ruff_cache

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
