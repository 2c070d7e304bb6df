# xgen: `make run` installs and trains the default experiment; `make test` installs and runs the tests.
PY    ?= python3
PIP   ?= $(PY) -m pip
STAMP := .make
ARGS  ?=
# TORCH_INDEX: a pip index URL to take torch and torchvision from before xgen is installed (e.g. the
# PyTorch project's CPU-only wheel index on a machine without a GPU; README "Set up"). Empty: the
# default index's wheels (on Linux x86-64 that is the CUDA build).
TORCH_INDEX ?=
# TEST_WORKERS: pytest-xdist processes for `make test` (whole test files per process, one torch thread each);
# 2 fits the 2-core CI machine, more cores take more (make test TEST_WORKERS=8), 0 runs in this process.
TEST_WORKERS ?= 2

.PHONY: install data run test test-fast test-floors bench bench-gpu bench-all clean help
help:
	@echo "make run    install, then train the default experiment (VAE on Fashion-MNIST, a few minutes on CPU)"
	@echo "make test   install, then run the test suite"
	@echo "            TORCH_INDEX=<pip index URL>: take torch/torchvision from there first (e.g. CPU-only wheels)"
	@echo "make test-floors  the model template and CLI tests at the oldest versions pyproject allows, in"
	@echo "            a clean venv (.ci/floors, docs/floors.md; ~6 min cold on 2 CPU cores, ~3.5 min warm)"
	@echo "make bench  xgen vs hand-written loops, images/s (bench/bench_speed.py, ~6 min on 2 CPU cores)"
	@echo "make bench-gpu  GPU readiness: every model, speed options, packing, FID, explain on CUDA (~8 min; one JSON line)"
	@echo "make bench-all  every benchmark script in bench/ (one JSON line each)"

install: $(STAMP)/install data

$(STAMP)/install: pyproject.toml
	@mkdir -p $(STAMP)
ifneq ($(strip $(TORCH_INDEX)),)
	$(PIP) install -q --index-url "$(TORCH_INDEX)" torch torchvision
endif
	$(PIP) install -q -e ".[test]"
	@touch $@

# Debian/Ubuntu: Fashion-MNIST from the distribution (elsewhere xgen downloads it on first use).
data:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  ( $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist ) \
	  || echo "note: could not install dataset-fashion-mnist; xgen will download Fashion-MNIST instead"; \
	fi

run: install
	xgen $(ARGS)

test: install
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(ARGS)

test-fast: install
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow" $(ARGS)

# Its own clean venv (not the one `make install` fills): the pins in .ci/floors-constraints.txt.
test-floors: data
	PYTHON=$(PY) ARGS="$(ARGS)" .ci/floors

bench: install
	OMP_NUM_THREADS=1 $(PY) bench/bench_speed.py $(ARGS)

bench-gpu: install
	$(PY) bench/bench_gpu.py $(ARGS)

bench-all: install
	@for f in bench/bench_*.py; do $(PY) $$f; done

clean:
	rm -rf $(STAMP) build dist src/*.egg-info .pytest_cache
