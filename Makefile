# Two entry points (see README): `make demo` runs the main job, `make test` the test suite.
# Each one creates .venv and installs the package on first use.
PY := .venv/bin/python

.PHONY: setup demo test bench
setup:
	@bash scripts/setup_env.sh

demo: setup
	@PYTHON=$(PY) bash scripts/get_real_videos.sh data/real_videos
	$(PY) -m autogaze.demo

test: setup
	HF_HUB_OFFLINE=1 WANDB_MODE=disabled $(PY) -m pytest tests

bench: setup
	$(PY) benchmarks/run_all.py
