# Every target makes the virtual environment it needs; a fresh clone needs only python3,
# a C compiler and make. The venv is (re)installed when it is missing or pyproject.toml
# is newer than its stamp, so `make test` after a dependency change picks the change up.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench-overhead clean distclean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e '.[test]'
	touch $@

demo: $(STAMP)
	$(BIN)/python examples/demo.py

# The model tests run a second time with the memory-plan sanitizer on (see README).
MODEL_TESTS := tests/test_layers.py tests/test_hybridize.py tests/test_rnn.py \
	tests/test_jit_training.py tests/test_nn_block.py tests/test_loss.py \
	tests/test_optim.py tests/test_autodiff.py tests/test_examples.py \
	tests/test_llvm_models.py tests/test_llvm_program.py

test: $(STAMP)
	$(BIN)/ruff check graphc tests examples benchmarks
	GRAPHC_SANITIZE=1 $(BIN)/python -m pytest -q $(MODEL_TESTS)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check graphc tests examples benchmarks

bench-overhead: $(STAMP)
	$(BIN)/python benchmarks/eager_overhead.py

# Caches and build outputs; the venv stays (distclean removes it too).
clean:
	rm -rf .pytest_cache .ruff_cache .hypothesis build dist *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
