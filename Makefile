# Two commands a fresh machine needs: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch/torchvision are pinned: other versions download gigabytes or break torchvision's ops.
PIPC   := $(PIP) install --constraint constraints.txt

.PHONY: demo test lint venv venv-test report-check clean

$(VENV)/.core: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIPC) --quiet torch==2.14.1 torchvision==0.29.1
	$(PIPC) --quiet -e '.[onnx,fastjpeg]'
	touch $@

# The test extras, plus the yolov5 peer used by the parity tests (see tests/peers.txt).
$(VENV)/.test: $(VENV)/.core tests/peers.txt
	$(PIPC) --quiet -e '.[dev]'
	$(PIPC) --quiet --no-deps -r tests/peers.txt
	touch $@

venv: $(VENV)/.core
venv-test: $(VENV)/.test

demo: $(VENV)/.core
	$(VENV)/bin/modyolo demo

test: $(VENV)/.test
	$(PY) -m pytest -q -n 2 --timeout 900

# ruff (lint + format check) and mypy (nn/, engine/, eval/), pinned in the `lint` extra that `dev` includes.
LINT_PATHS := src tests benchmarks
lint: $(VENV)/.test
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy

# Render a compare report in real headless Chromium (Debian's package) and keep the screenshot.
report-check: $(VENV)/.test
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	MODYOLO_SCREENSHOT_DIR=runs/report-check $(PY) -m pytest -q tests/tools/test_report_browser.py

clean:
	rm -rf $(VENV) runs .pytest_cache
