# The two set-up commands of the README.  Each installs what it needs first.
.PHONY: demo test setup lint bench

setup:
	@scripts/setup.sh

test: setup
	@scripts/test.sh

demo: setup
	@scripts/demo.sh

lint: setup
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy --strict afbr

bench:
	@AFBR_BENCH=1 scripts/setup.sh
	@scripts/bench.sh
