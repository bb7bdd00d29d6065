# edgeasc: fresh-machine entry points. `make demo` and `make test` each do their own set-up.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_DIR ?= demo_out
DEMO_SCALE ?= small

.PHONY: setup demo test test-fast clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The main job: synthetic TAU22-layout data -> SSCP-Mobile student -> per-device evaluation ->
# int8 TFLite export with parity report -> budget audit of the file that ships.
demo: setup
	$(PY) -m edgeasc.cli synth $(DEMO_DIR)/data --scale $(DEMO_SCALE) --if-missing
	$(PY) -m edgeasc.cli train --data $(DEMO_DIR)/data --out $(DEMO_DIR)/student --recipe recipes/demo_student.toml --resume
	$(PY) -m edgeasc.cli evaluate $(DEMO_DIR)/student/model.pt --data $(DEMO_DIR)/data
	$(PY) -m edgeasc.cli export $(DEMO_DIR)/student/model.pt --int8 --data $(DEMO_DIR)/data --out $(DEMO_DIR)/export
	$(PY) -m edgeasc.cli audit $(DEMO_DIR)/export/model_int8.tflite --no-layers

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
