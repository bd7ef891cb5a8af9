# The two set-up commands for a new machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: demo test test-models lint bench bench-large fuzz install install-test labelstudio clean

$(VENV)/bin/uv:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check uv

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/uv
	$(UV) pip install -q --compile-bytecode -p $(PY) -e .
	$(PY) -m compileall -q prelabel > /dev/null
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/uv
	$(UV) pip install -q --compile-bytecode -p $(PY) -e '.[test]'
	$(PY) -m compileall -q prelabel > /dev/null
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# Label Studio in its own venv under .ls/ and its migrated template (the tests' real server; skipped when there)
labelstudio:
	bash scripts/labelstudio.sh all

demo: install
	@echo "== the formats prelabel reads"
	$(VENV)/bin/prelabel formats
	@echo "== convert the sample YOLO dataset to COCO (report in build/demo/report.json)"
	$(VENV)/bin/prelabel convert sample_data/yolo -o build/demo/sample.coco.json --report build/demo/report.json
	$(VENV)/bin/prelabel validate build/demo/sample.coco.json --images sample_data/images
	@echo "== a contact sheet of the result: build/demo/preview.png"
	$(VENV)/bin/prelabel preview build/demo/sample.coco.json --images sample_data/images -o build/demo/preview.png
	@echo "== upload into a local project (the embedded default target)"
	$(VENV)/bin/prelabel project init build/demo/project --images sample_data/images --categories cat,dog,car,person
	$(VENV)/bin/prelabel upload build/demo/sample.coco.json --to local:build/demo/project
	$(VENV)/bin/prelabel project status build/demo/project

# Two pytest workers (pytest-xdist; TEST_WORKERS=0 runs the tests in this one process): the suite takes about half
# the time on two cores. Each worker that runs a Label Studio test starts its own server (tests/conftest.py).
TEST_WORKERS ?= 2

test: install-test labelstudio
	$(PY) -m pytest -q -p no:cacheprovider --doctest-modules -n $(TEST_WORKERS) prelabel tests

# Real Ultralytics Results and torchvision outputs (tests/test_models_torch.py and the docs' py-models blocks),
# in a venv of their own: torch 2.13.0+cpu is the CPU wheel on this machine's disk (pip finds it; an exact
# +cpu pin fails rather than download a CUDA build), Ultralytics without its dependencies (they would pull
# torchvision and a CUDA torch), torchvision's metadata only (Ultralytics reads its version; PyPI's
# torchvision does not import beside the CPU torch, and nothing here imports it). About 2.3 GB.
VENV_MODELS ?= .venv-models
$(VENV_MODELS)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_MODELS)
	$(VENV_MODELS)/bin/pip install -q --disable-pip-version-check 'torch==2.13.0+cpu'
	$(VENV_MODELS)/bin/pip install -q --disable-pip-version-check --no-deps ultralytics 'torchvision==0.28.0'
	$(VENV_MODELS)/bin/pip install -q --disable-pip-version-check -e '.[test]' opencv-python-headless psutil \
		polars ultralytics-thop requests
	touch $@

test-models: $(VENV_MODELS)/.installed
	$(VENV_MODELS)/bin/python -m pytest -q -p no:cacheprovider tests/test_models_torch.py tests/test_model_objects.py \
		-m "not labelstudio"

lint: install-test
	$(VENV)/bin/ruff check prelabel tests bench
	$(VENV)/bin/mypy prelabel

bench: install
	$(PY) bench/run.py --size small

bench-large: install
	$(PY) bench/run.py --size large

# hypothesis fuzzing of every adapter with a long budget (make test runs a short, derandomized one)
fuzz: install-test
	PRELABEL_FUZZ_EXAMPLES=$${PRELABEL_FUZZ_EXAMPLES:-2000} $(PY) -m pytest -q -p no:cacheprovider tests/test_fuzz.py tests/test_validate_fast.py

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
