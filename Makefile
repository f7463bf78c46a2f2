# Two commands on a fresh machine: `make demo` and `make test`. Both install into .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel these machines have on disk; override (e.g. TORCH=torch) where a CUDA build is wanted.
TORCH ?= torch==2.13.0
PROMPT ?= a red ball moving to the right

.PHONY: install test demo train-default clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@

test: install
	$(BIN)/python -m pytest -q

demo: install
	mkdir -p outputs
	$(BIN)/fusionframes generate "$(PROMPT)" -o outputs/demo.mp4 --fps high --seed 0

# Reproduce the embedded default model from scratch (resumable: run it again after an interruption).
train-default: install
	$(BIN)/fusionframes train-recipe configs/default --output fusionframes/default_model \
		--settings '{"num_keyframes": 16, "height": 128, "width": 128, "max_text_tokens": 32}' --weights-dtype float16

clean:
	rm -rf $(VENV) outputs .pytest_cache
