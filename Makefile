# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build of PyTorch: pinned and installed first so that the plain
# `torch` requirement of the package is already met and pip does not pull a
# multi-GB CUDA build. Override TORCH_SPEC on a GPU machine, e.g. TORCH_SPEC=torch.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install demo test test-all bench clean

DATA ?= ../shared/data

$(BIN)/neuralprior: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[test]"
	@touch $@

install: $(BIN)/neuralprior

demo: install
	$(BIN)/neuralprior demo -o demo-output

test: install
	$(BIN)/python -m pytest -q

test-all: install
	$(BIN)/python -m pytest -q -m "slow or not slow"

# the paper's tables beside classical baselines, bounded to 120 s of DIP per image (see docs/benchmarks.md)
bench: install
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/neuralprior bench --data $(DATA) --out bench-results

clean:
	rm -rf $(VENV) demo-output build src/*.egg-info
