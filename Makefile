# Two commands do all set-up on a fresh machine:  make demo  and  make test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | md5sum | cut -c1-8)

.PHONY: demo test install system-deps bench iqa clean-venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned to the local CPU build: anything looser pulls GBs of CUDA wheels.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP) system-deps

# Debian packages some steps need: poppler-utils (the PDF report test renders pages to PNG),
# mosquitto (the MQTT broker, and mosquitto_passwd), openssl (the TLS test's certificates),
# chromium (the live view's browser test), libjxl-devtools
# (butteraugli_main and ssimulacra_main, two of the perceptual metrics).
system-deps:
	@bash scripts/system-deps.sh

demo: install
	$(BIN)/simnet run scenarios/lossy20.yaml

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/pip install -q ns.py
	$(BIN)/python benchmarks/run_all.py

# pyiqa's metrics (fsim, vif, gmsd; lpips and dists where their weights can be downloaded) in an
# environment of their own: pyiqa needs torchvision, which has no CPU build for the pinned torch, so
# pip takes the newest torch with its CUDA packages (about 7 GB of disk). The project goes in
# without its torch pin; then the pyiqa tests run.
IQA_VENV := .venv-iqa
iqa:
	$(PYTHON) -m venv $(IQA_VENV)
	$(IQA_VENV)/bin/pip install -q pyiqa cvvdp
	$(IQA_VENV)/bin/pip install -q --no-deps -e .
	$(IQA_VENV)/bin/pip install -q $$($(PYTHON) scripts/requirements.py --without torch --extra test)
	$(IQA_VENV)/bin/python -m pytest -q tests/test_iqa.py tests/test_metrics.py

clean-venv:
	rm -rf $(VENV) $(IQA_VENV)
