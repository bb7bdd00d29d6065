# edgeasc: fresh-machine entry points. `make demo` and `make test` each do their own set-up.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_DIR ?= demo_out
DEMO_SCALE ?= small

.PHONY: setup demo test test-fast export bench bench-ci bench-ptq bench-parity bench-calibration bench-calibration-lite clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The main job: synthetic TAU22-layout data, then the seed's whole system as one resumable pipeline
# (recipes/pipeline_demo.toml): two teachers -> ensemble logits -> AGP pruning to the budget with KD ->
# quantisation-aware KD fine-tuning -> device-specific fine-tuning -> int8 TFLite per device -> per-device
# float/int8 evaluation -> budget audit -> benchmark; ends with the summary table. Finished stages are
# skipped and a killed stage resumes, so re-running `make demo` continues where it stopped.
demo: setup
	$(PY) -m edgeasc.cli synth $(DEMO_DIR)/data --scale $(DEMO_SCALE) --if-missing
	$(PY) -m edgeasc.cli pipeline recipes/pipeline_demo.toml --data $(DEMO_DIR)/data --out $(DEMO_DIR)/pipeline

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

# The reference models users take without training (export/README.md): a fixed, seeded recipe on synthetic
# `tiny` data (the demo's general int8 student and the seed's S1 architecture, trained side by side), then
# int8 .tflite, .onnx, audit JSON, parity report and model card per model, renamed into export/ at the end.
# 7.1 to 9.6 minutes measured on 2 cores that other jobs shared (the target: 15 at most); commit the result.
export: setup
	$(PY) benchmarks/suite/export_refs.py

# Benchmark suite (benchmarks/suite/run.py, docs/bench.md): results in benchmarks/suite/results/, then the regression
# check against benchmarks/suite/baseline.json (exit 1 on a gated regression; timings only warn).
bench: setup
	$(PY) benchmarks/suite/run.py --profile full
	$(PY) benchmarks/suite/compare.py benchmarks/suite/results/full.json

# The short suite CI runs after the tests (tiny data; 5.5-7.5 minutes on 2 busy cores). First, in seconds, the
# committed export/ against its manifest, its audits and the budget (exit 1 and one line per mismatch).
bench-ci: setup
	$(PY) benchmarks/suite/check_export.py
	$(PY) benchmarks/suite/run.py --profile ci
	$(PY) benchmarks/suite/compare.py benchmarks/suite/results/ci.json

# Post-training quantisation on models trained at real-recording log-mel levels (docs/export.md): two trainings
# of 30 epochs on `medium` (about 2.5 hours on 2 cores; finished runs in benchmarks/.work/ptq are reused), then
# five exports of each (plain PTQ, each default step in turn, --int16-layers auto) and the gate on agreement and accuracy drop.
bench-ptq: setup
	$(PY) benchmarks/suite/run.py --profile ptq
	$(PY) benchmarks/suite/compare.py benchmarks/suite/results/ptq.json

# edgeasc's side of the training-parity comparison with the official baseline code (docs/training.md): the DCASE
# baseline recipe, 20 epochs on `small` (about 20 minutes on one core; a finished run in benchmarks/.work/parity
# is reused), then the gate on its float32 validation and float16 test macro accuracy.
bench-parity: setup
	$(PY) benchmarks/suite/run.py --profile parity
	$(PY) benchmarks/suite/compare.py benchmarks/suite/results/parity.json

# Does the synthetic task reward data and capacity the way TAU22 does (docs/bench.md, issue 25)? The DCASE
# baseline recipe on every split of `small` and base 64/96 at split25, 2 seeds, 20 epochs: about 12 CPU hours,
# resumable (benchmarks/.work/calibration); the table beside TAU22's published figures, with the targets.
# `bench-calibration-lite`: 3 splits, base 64, 1 seed, 10 epochs (about 1.4 CPU hours).
bench-calibration: setup
	$(PY) benchmarks/suite/calibration.py --profile full

bench-calibration-lite: setup
	$(PY) benchmarks/suite/calibration.py --profile lite

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
