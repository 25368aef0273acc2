# voxarena: every target installs what it needs first.
PYTHON ?= python3.11
VENV := .venv
BIN_DIR ?= $(HOME)/.cache/voxarena/bin
PYTEST_ARGS ?=

.PHONY: run test test-postgres check lint venv system-deps livekit-server livekit-sip seaweedfs bench clean vendor-livekit-client

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	@touch $@

system-deps:
	.ci/install-system.sh

livekit-server:
	.ci/build-livekit.sh server

# The SIP bridge for the SIP tier (tests/e2e/sip_tier): from the module proxy, else from ../shared/livekit-sip.
# Needs the cgo headers from system-deps.
livekit-sip: system-deps
	.ci/build-livekit.sh sip

# SeaweedFS (`weed`), the S3-compatible store the recording tests keep recordings in (tests/harness/seaweedfs.py):
# from the module proxy's source, built once into BIN_DIR.
seaweedfs:
	.ci/build-seaweedfs.sh

# Runs the product on its embedded defaults: the API on http://127.0.0.1:8080, SQLite in ./data, the embedded token
# issuer, and (with no VOXARENA_LIVEKIT_URL) a local LiveKit dev server on loopback.
run: venv
	@.ci/build-livekit.sh server || echo "run: could not build livekit-server; set VOXARENA_LIVEKIT_URL/_API_KEY/_API_SECRET to use your own LiveKit server"
	$(VENV)/bin/voxarena serve

# Lint and types: ruff (rules and formatting) and mypy, zero findings.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The fast tier (under 2 minutes): lint, types and every test that needs no root, no Go-built binary and no network
# namespace, in 4 pytest workers, but the API fuzzing (schemathesis, 1.5 min on its own), which `make test` runs.
check: lint
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider -n 4 --ignore=tests/e2e \
	  --deselect tests/api/test_schemathesis.py --durations=10 $(CHECK_ARGS)

# The whole test suite, lint and types first, then every test inside a network namespace of its own (real
# livekit-server and livekit-sip built from source, SeaweedFS for the recordings kept in S3; the SIP tier also needs
# sipp and redis-server from system-deps, and fails when one is missing). The 25 slowest tests are named at the end.
test: venv system-deps livekit-server livekit-sip seaweedfs lint
	.ci/netns-run $(VENV)/bin/python -m pytest -q --durations=25 $(PYTEST_ARGS)
	$(MAKE) test-postgres

# The second pass: every store-touching test again, with the store on a real PostgreSQL (tests/harness/postgres.py
# starts one per pytest worker; each test gets its own database), and the calls end to end on it.
PG_E2E = tests/e2e/test_voice_calls.py tests/e2e/test_metering.py tests/e2e/test_event_stream.py \
  tests/e2e/test_crash_safety.py
test-postgres: venv system-deps
	.ci/netns-run env VOXARENA_TEST_BACKEND=postgresql $(VENV)/bin/python -m pytest -q -p no:cacheprovider -n 2 \
	  --ignore=tests/e2e --deselect tests/api/test_schemathesis.py $(PYTEST_ARGS)
	.ci/netns-run env VOXARENA_TEST_BACKEND=postgresql $(VENV)/bin/python -m pytest -q -p no:cacheprovider \
	  $(PG_E2E) $(PYTEST_ARGS)

BENCH_ARGS ?=

bench: venv system-deps livekit-server livekit-sip
	.ci/netns-run $(VENV)/bin/python -m bench $(BENCH_ARGS)

# The dashboard's vendored LiveKit JS client, fetched again from the npm registry (VERSION=x.y.z for another one).
vendor-livekit-client:
	scripts/vendor-livekit-client.sh $(VERSION)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
