# Two commands on a fresh machine: `make demo` and `make test`. Both install into .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel these machines have on disk; override (e.g. TORCH=torch) where a CUDA build is wanted.
TORCH ?= torch==2.13.0
PROMPT ?= a red ball moving to the right
# Every stage: 16 keyframes, two interpolation passes, 241 frames at 30 FPS (DEMO_FPS=low: the keyframes only).
DEMO_FPS ?= high
# The default model's pipeline settings. threshold_range 2: its MoVQ latents reach about ±1.7 (98th percentile per
# frame), where KV 1.0's sit within ±1.
DEFAULT_SETTINGS = {"num_keyframes": 16, "height": 128, "width": 128, "max_text_tokens": 32, "threshold_range": 2.0, "num_inference_steps": 30, "interpolation_steps": 10, "guidance_scale": 5.0, "decode_chunk_size": 16}

.PHONY: install test browser serve demo train-default clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@

test: install browser
	$(BIN)/python -m pytest -q

# The web-demo test drives Debian's Chromium; installed here when possible (root with apt), else that test skips.
browser:
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
		|| echo "Chromium could not be installed: tests/test_web_demo.py will be skipped"

# The web demo on http://127.0.0.1:7860 (the embedded default model; pass ARGS="--model DIR" for another).
serve: install
	$(BIN)/fusionframes serve $(ARGS)

demo: install
	mkdir -p outputs
	$(BIN)/fusionframes generate "$(PROMPT)" -o outputs/demo.mp4 --seed 0 --fps $(DEMO_FPS)

# Reproduce the embedded default model from scratch (resumable: run it again after an interruption).
train-default: install
	$(BIN)/fusionframes train-recipe configs/default --output fusionframes/default_model \
		--settings '$(DEFAULT_SETTINGS)' --weights-dtype float16

clean:
	rm -rf $(VENV) outputs .pytest_cache
