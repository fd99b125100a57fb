# The two commands: `make train` (the demo training run) and `make test` (the whole suite).
# Both create .venv and install the project on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIG ?= configs/demo.yaml

.PHONY: install train test lint format clean bench

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

install: $(STAMP)

train: $(STAMP)
	$(PY) train.py fit --config $(CONFIG)

# The numerics-sensitive tests (cross-framework parity and every tolerance gate) run a second time
# with oneDNN (TensorFlow's and PyTorch's) and PyTorch's own vectorised kernels (ATen) capped at
# AVX2, so one run covers two kernel families: an AVX-512 machine checks its own kernels and the
# ones an AVX2 machine would pick. Left out of the second run: what the cap cannot change (the
# import order, onnxruntime's own kernels) or cannot bring near a limit (planted defects sit orders
# of magnitude above the noise), the full-width models (`slow`: minutes at the capped ISA), which
# are checked at the machine's own ISA only, and, in the files below, what no kernel computes
# (KERNEL_FREE: weights copied bit for bit, block shapes, a graph traced by torch.compile, and the
# tests marked `kernel_free`: refusals, dtypes, names, and planted defects that sit far beyond the
# noise on either ISA). The random specs draw 20 more there (the `rerun` profile,
# parity_tests/conftest.py).
# TensorFlow's start-up lines stay off the terminal: pytest's controller process never imports it.
NUMERICS := parity_tests/test_forward.py parity_tests/test_layers.py parity_tests/test_gradients.py \
	parity_tests/test_training_steps.py parity_tests/test_foreign.py parity_tests/test_bf16.py \
	parity_tests/test_keras_torch_backend.py tests/test_parity_cli.py tests/test_port.py \
	tests/test_torch_model.py
KERNEL_FREE := not bit_exact and not block_shapes and not torch_compile and not kernel_free

# The rerun runs where the CPU has kernels above AVX2: AVX-512 with byte and word instructions,
# the least oneDNN's and PyTorch's AVX-512 kernels ask for. Elsewhere (or where /proc/cpuinfo is
# not there to tell) the cap changes no kernel, and the rerun would repeat the first run.
ABOVE_AVX2 := grep -qsw avx512bw /proc/cpuinfo

# worksteal: a worker that runs out of tests takes over half of the other's, so one long test near
# the end does not leave a core idle.
test: $(STAMP)
	$(PY) -m pytest -n 2 --dist worksteal -q
	@if $(ABOVE_AVX2); then \
		echo "AVX2 rerun: the numerics at the kernels an AVX2 machine picks"; \
		ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 $(PY) -m pytest -n 2 --dist worksteal -q -p no:cacheprovider \
			-m 'not slow' -k '$(KERNEL_FREE)' --hypothesis-profile rerun $(NUMERICS); \
	else echo "AVX2 rerun left out: this CPU has no kernels above AVX2, so it would run the same ones"; fi

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: $(STAMP)
	$(PY) benchmarks/throughput.py

clean:
	rm -rf $(VENV) runs lightning_logs .pytest_cache
