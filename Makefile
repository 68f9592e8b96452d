# detal: two commands do all the set-up on a fresh machine with Python 3.11:
#   make demo   -> .venv, install, demo experiment, prints where the report is
#   make test   -> .venv, test dependencies (Label Studio server venv, Chromium), the whole test suite
# Both are idempotent: a second run reuses what is installed (and resumes/reuses the demo run).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
LS_VENV := .labelstudio/venv
STAMP  := $(VENV)/.detal-installed
export YOLO_OFFLINE := 1

.PHONY: install demo test test-private-clone test-deps labelstudio-venv browser bench clean-demo help

help:
	@echo "make demo   - install and run the demo active-learning experiment (runs/demo/report.html)"
	@echo "make test   - install test dependencies and run the whole test suite"
	@echo "make bench  - run the benchmarks in tools/"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned to the wheels this machine serves locally (a CUDA build; runs on CPU too)
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[test]'
	# label-studio-sdk pins opencv-python-headless 4.12, ultralytics pulls opencv-python: two cv2
	# distributions overwrite each other's files. Keep exactly one: headless (no GUI needed).
	$(BIN)/pip uninstall -q -y opencv-python || true
	$(BIN)/pip install -q --force-reinstall --no-deps 'opencv-python-headless>=4.12,<4.13'
	$(BIN)/python -c "import cv2, ultralytics, label_studio_sdk, detal; print('installed: cv2', cv2.__version__, 'ultralytics', ultralytics.__version__)"
	touch $(STAMP)

install: $(STAMP)

demo: install
	@start=$$(date +%s); \
	$(BIN)/detal simulate -c configs/demo.yaml || exit $$?; \
	echo "Report: runs/demo/report.html (open it in a browser; also runs/demo/report.md and the figures beside it)"; \
	echo "make demo: the experiment took $$(( $$(date +%s) - start )) s wall clock (install excluded)"

# The Label Studio server lives in its own venv: it pins its own SDK and OpenCV.
$(LS_VENV)/.installed:
	test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install -q label-studio==1.23.2
	touch $@

labelstudio-venv: $(LS_VENV)/.installed

# Debian's Chromium for the Playwright browser test (Playwright's own browser download fails offline).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "Chromium missing: run 'sudo apt-get install -y chromium' (needed by the browser test)"; exit 1; fi; }

test-deps: install labelstudio-venv browser

test: test-deps
	$(BIN)/python -m pytest -q

# The fast tests again, from a clone inside a private (0700) folder, as CI runs them: no test may depend on
# the folders above the checkout or on the user running it (root's home is 0700 in most containers).
FAST_TESTS := tests/report tests/acquisition tests/test_config.py tests/test_registry.py tests/test_state.py \
              tests/test_check.py tests/test_data.py tests/test_synthetic.py tests/test_scoring.py
test-private-clone: install
	@priv=$$(mktemp -d) && chmod 700 "$$priv" && git clone -q . "$$priv/detal" && \
	cd "$$priv/detal" && PYTHONPATH="$$PWD" $(CURDIR)/$(BIN)/python -m pytest -q -p no:cacheprovider $(FAST_TESTS); \
	rc=$$?; rm -rf "$$priv"; exit $$rc

bench: install
	$(BIN)/python tools/bench_scoring.py
	$(BIN)/python tools/bench_labelstudio.py
	$(BIN)/python tools/bench_cycle.py
	$(BIN)/python tools/bench_ray.py

clean-demo:
	rm -rf runs/demo datasets/shapes-demo
