# voxarena: every target installs what it needs first.
PYTHON ?= python3.11
VENV := .venv
BIN_DIR ?= $(HOME)/.cache/voxarena/bin
PYTEST_ARGS ?=

.PHONY: run test venv system-deps livekit-server bench clean

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

# Runs the product on its embedded defaults: the API on http://127.0.0.1:8080, SQLite in ./data, the embedded token
# issuer, and (with no VOXARENA_LIVEKIT_URL) a local LiveKit dev server on loopback.
run: venv
	@.ci/build-livekit.sh server || echo "run: could not build livekit-server; set VOXARENA_LIVEKIT_URL/_API_KEY/_API_SECRET to use your own LiveKit server"
	$(VENV)/bin/voxarena serve

# The whole test suite, inside a network namespace of its own (a real livekit-server built from its Go module).
test: venv system-deps livekit-server
	.ci/netns-run $(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

BENCH_ARGS ?=

bench: venv system-deps livekit-server
	.ci/netns-run $(VENV)/bin/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
