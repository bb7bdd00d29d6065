# edgeasc: fresh-machine entry points. `make demo` and `make test` each do their own set-up.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_DIR ?= demo_out
DEMO_SCALE ?= small

.PHONY: setup demo test test-fast bench bench-ci clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The main job: synthetic TAU22-layout data -> SSCP-Mobile student -> quantisation-aware fine-tuning
# (weights on the int8 grid) -> per-device evaluation -> int8 TFLite export with parity report -> budget
# audit of the file that ships. Finished stages are skipped, a killed training stage resumes.
demo: setup
	$(PY) -m edgeasc.cli synth $(DEMO_DIR)/data --scale $(DEMO_SCALE) --if-missing
	$(PY) -m edgeasc.cli train --data $(DEMO_DIR)/data --out $(DEMO_DIR)/student --recipe recipes/demo_student.toml --resume
	$(PY) -m edgeasc.cli train --data $(DEMO_DIR)/data --out $(DEMO_DIR)/student_qat --recipe recipes/demo_qat.toml --set model.init_checkpoint=$(DEMO_DIR)/student/model.pt --resume
	$(PY) -m edgeasc.cli evaluate $(DEMO_DIR)/student_qat/model.pt --data $(DEMO_DIR)/data
	$(PY) -m edgeasc.cli export $(DEMO_DIR)/student_qat/model.pt --int8 --data $(DEMO_DIR)/data --out $(DEMO_DIR)/export
	$(PY) -m edgeasc.cli audit $(DEMO_DIR)/export/model_int8.tflite --no-layers

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

# Benchmark suite (benchmarks/run.py, docs/bench.md): results in benchmarks/results/, then the regression
# check against benchmarks/baseline.json (exit 1 on a gated regression; timings only warn).
bench: setup
	$(PY) benchmarks/run.py --profile full
	$(PY) benchmarks/compare.py benchmarks/results/full.json

# The short suite CI runs after the tests (tiny data; 5.5-7.5 minutes on 2 busy cores).
bench-ci: setup
	$(PY) benchmarks/run.py --profile ci
	$(PY) benchmarks/compare.py benchmarks/results/ci.json

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
