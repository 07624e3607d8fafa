# Two commands: `make demo` and `make test`. Both create .venv and install on first use and are idempotent.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# the tests also need the imaging extra (torch CPU build from the wheel on disk, MONAI) and the spark extra (PySpark)
IMAGING_STAMP := $(VENV)/.imaging-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PIP_FLAGS := --quiet --disable-pip-version-check

.PHONY: bench-signals demo test test-imaging test-all lint typecheck bench bench-fhir bench-cds bench-imaging bench-vitals bench-survival bench-deid bench-ap chromium clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_FLAGS) --upgrade pip
	$(BIN)/python -m pip install $(PIP_FLAGS) -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

# Ends with the CDS Hooks service running in the foreground (Ctrl-C stops it): patients and cards at its URL.
demo: $(STAMP)
	$(BIN)/medml demo
	$(BIN)/medml serve

# Debian's Chromium for the browser tests of the HTML report; installed when absent.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

$(IMAGING_STAMP): $(STAMP)
	$(BIN)/python -m pip install $(PIP_FLAGS) -e '.[dev,imaging,spark]'
	@rm -f $(VENV)/.imaging-*
	@touch $@

test: $(IMAGING_STAMP) chromium
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/ruff format --check src tests benchmarks tools
	$(BIN)/mypy
	$(BIN)/python -m pytest -m "not slow"

# Only the image-classifier tests (training, Grad-CAM, calibration, DiagnosticReport, the DICOM endpoint); `make
# test` runs them too.
test-imaging: $(IMAGING_STAMP)
	$(BIN)/python -m pytest tests/models/test_imaging.py tests/models/test_imaging_fhir.py \
	  tests/models/test_imaging_calibration.py tests/explain tests/pipelines/test_imaging_pipeline.py \
	  tests/registry/test_registry_state_dict.py

test-all: $(IMAGING_STAMP) chromium
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/ruff format --check src tests benchmarks tools

typecheck: $(STAMP)
	$(BIN)/mypy

# PneumoniaMNIST, 3 seeds (about 20 minutes on 2 cores)
bench-imaging: $(IMAGING_STAMP)
	$(BIN)/python benchmarks/bench_imaging.py --out benchmarks/results-imaging.md

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_tabular.py --budget-seconds 60 --demo | tee benchmarks/results-tabular.md

# FHIR: the view engine against pysof, fhir4ds-v2 (AGPL: its own venv, never a dependency) and the DuckDB floor;
# then PhysioNet 2012 features from FHIR against the tabular adapter.
bench-fhir: $(STAMP)
	$(BIN)/python -m pip install $(PIP_FLAGS) -e '.[dev,bench]'
	@test -x $(VENV)/peers/fhir4ds/bin/python || { $(PYTHON) -m venv $(VENV)/peers/fhir4ds && \
	  $(VENV)/peers/fhir4ds/bin/python -m pip install $(PIP_FLAGS) fhir4ds-v2 orjson; }
	$(BIN)/python benchmarks/bench_fhir.py --out benchmarks/results-fhir.md
	$(BIN)/python benchmarks/bench_fhir_features.py --out benchmarks/results-fhir-features.md

# The CDS Hooks service under load (1, 10, 100 clients) against a naive FastAPI service, same run.
bench-cds: $(STAMP)
	$(BIN)/python benchmarks/bench_cds.py --out benchmarks/results-cds.md

# NEWS2/qSOFA streaming speed, the 1,000-bed replay and the scores on PhysioNet 2012 (benchmarks/results-vitals.md)
bench-vitals: $(STAMP)
	$(BIN)/python benchmarks/bench_vitals.py

# 5x5-fold cross-validation of the survival models beside scikit-survival's CoxPH and RSF (about 20 minutes)
bench-survival: $(STAMP)
	$(BIN)/python benchmarks/bench_survival.py --out benchmarks/results-survival.md

# De-identification speed on Synthea with medml's Safe Harbor configuration (benchmarks/results-deid.md)
bench-deid: $(STAMP)
	$(BIN)/python benchmarks/bench_deid.py

# Monitoring on real shifts, NannyML's CBPE as a peer in its own venv (nannyml pins lightgbm < 4.6), and the speed
# of drift + estimation over 1,000,000 predictions x 225 features (benchmarks/results-monitor.md)
NANNYML_VENV := $(VENV)/peers/nannyml
.PHONY: bench-monitor
bench-monitor: $(STAMP)
	@test -x $(NANNYML_VENV)/bin/python || { $(PYTHON) -m venv $(NANNYML_VENV) && \
	  $(NANNYML_VENV)/bin/python -m pip install $(PIP_FLAGS) nannyml==0.13.1 statsmodels; }
	$(BIN)/python benchmarks/bench_monitor.py --out benchmarks/results-monitor.md

# The promotion gate's error rates (200 samples of SUPPORT2 patients) and retraining at a new site (Cleveland -> VA,
# held-back SUPPORT2 disease groups); about 15 minutes on 2 busy cores (benchmarks/results-monitor-gates.md)
.PHONY: bench-gates
bench-gates: $(STAMP)
	$(BIN)/python benchmarks/bench_gates.py --budget-seconds 5 --max-trials 5 --out benchmarks/results-monitor-gates.md

# medml's search against AutoPrognosis 0.1.22 on the same 5 patient-grouped folds (benchmarks/results-ap.md). AP gets
# its own venv: the torch 2.13.0 CPU wheel first (so it pulls no CUDA build), then optuna<5 and scikit-learn<1.8.
AP_VENV := $(VENV)/peers/autoprognosis
bench-ap: $(STAMP)
	@test -x $(AP_VENV)/bin/python || { $(PYTHON) -m venv $(AP_VENV) && \
	  $(AP_VENV)/bin/python -m pip install $(PIP_FLAGS) torch==2.13.0 && \
	  $(AP_VENV)/bin/python -m pip install $(PIP_FLAGS) autoprognosis==0.1.22 'optuna<5' 'scikit-learn<1.8' torch==2.13.0; }
	$(BIN)/python benchmarks/bench_autoprognosis.py --out benchmarks/results-ap.md

clean:
	rm -rf $(VENV) .medml build src/*.egg-info

# R peaks on MIT-BIH 100, PPG pulse rate on the false-alarm records, AF on PhysioNet/CinC 2017 (benchmarks/results-signals.md)
bench-signals: $(STAMP)
	$(BIN)/python benchmarks/bench_signals.py --out benchmarks/results-signals.md
