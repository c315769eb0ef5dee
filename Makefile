# The two README commands: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.kiln-installed

.PHONY: test demo lint bench clean-venv

$(STAMP): pyproject.toml requirements/ci.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=23" "setuptools>=64" wheel
	$(PY) -m pip install -q -r requirements/ci.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# MMDetection's released config trees (configs/ of the 3.3.0 and 2.28.2 wheels, downloaded from PyPI,
# never installed): the upstream-config tests run them unchanged.
UPSTREAM := $(VENV)/upstream/.fetched
$(UPSTREAM): scripts/fetch_upstream_configs.py | $(STAMP)
	$(PY) scripts/fetch_upstream_configs.py --dest $(VENV)/upstream
	touch $(UPSTREAM)

# Two pytest workers on two cores: one torch/OpenMP thread each (subprocesses inherit it), so the
# workers do not oversubscribe the CPU.
test: $(STAMP) $(UPSTREAM)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadfile

# The README demo: train a small RetinaNet on the generated shapes data (made on first use in
# KILN_DATA, default ~/.cache/kiln/data), evaluate COCO AP, plot curves, draw predictions.
# Re-running resumes: a finished run is only evaluated again.
DEMO_CONFIG ?= kiln::shapes/retinanet_r18_fpn_shapes.py
DEMO_DIR ?= work_dirs/demo

demo: $(STAMP)
	$(PY) -m kiln train $(DEMO_CONFIG) --work-dir $(DEMO_DIR) --resume
	$(PY) -m kiln test $(DEMO_CONFIG) $(DEMO_DIR) --work-dir $(DEMO_DIR) --out $(DEMO_DIR)/detections.json
	$(PY) -m kiln plot $(DEMO_DIR)/metrics.jsonl --keys loss lr bbox/AP --out $(DEMO_DIR)/curve.png
	$(PY) -m kiln infer $(DEMO_CONFIG) $(DEMO_DIR) --dataset-images 8 --out-dir $(DEMO_DIR)/predictions

lint: $(STAMP)
	$(VENV)/bin/ruff check kiln tests benchmarks scripts

clean-venv:
	rm -rf $(VENV)
