# The two commands of the README: `make run` and `make test`. Each installs what it needs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch; pip takes it from the local wheel cache where one exists.
TORCH ?= torch==2.13.0
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
BENCH_VENV ?= .venv-bench
BENCH_TORCH ?= torch==2.14.1

.PHONY: run test install data test-deps bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

# Debian packages, installed only when missing, with one `apt-get update`: Fashion-MNIST
# (dataset-fashion-mnist: IDX files under /usr/share/datasets) for both commands, headless
# Chromium for the tests (they open the evaluation report page in it) and a C++ compiler for the
# tests of train.compile (torch.compile's CPU backend builds its kernels with one).
CHROMIUM := /usr/bin/chromium-headless-shell
define apt_install
	@missing="$(strip $(1))"; \
	if command -v apt-get >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	else \
	  echo "missing Debian packages: $$missing (Fashion-MNIST: put the four IDX files in \$$SELFSUP_DATA/fashion-mnist; see README)"; exit 1; \
	fi
endef

data:
	$(if $(wildcard $(FMNIST)),,$(call apt_install,dataset-fashion-mnist))

TEST_PKGS = $(if $(wildcard $(FMNIST)),,dataset-fashion-mnist) $(if $(wildcard $(CHROMIUM)),,chromium-headless-shell) \
	$(if $(shell command -v g++),,g++)
test-deps:
	$(if $(strip $(TEST_PKGS)),$(call apt_install,$(TEST_PKGS)))

run: install data
	$(VENV)/bin/selfsup pretrain --config configs/fmnist.yaml --out runs/fmnist

test: install test-deps
	$(PY) -m pytest

$(BENCH_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q "$(BENCH_TORCH)" -e ".[bench]"
	touch $@

bench: $(BENCH_VENV)/.installed data
	$(BENCH_VENV)/bin/python benchmarks/fmnist_cpu.py --write

clean:
	rm -rf $(VENV) $(BENCH_VENV) runs
