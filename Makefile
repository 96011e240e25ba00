# `make demo` and `make test` each build .venv from nothing when it is absent.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages of the espeak-ng and festival training voices (data/voices.py), CMU flite (its
# voices are reserved for evaluation on unheard voices: `data synth --evaluation`), and WordNet's
# database, whose usage examples are the acoustic set's general English (importers/wordnet.py).
VOICE_PACKAGES := espeak-ng festival festvox-kdlpc16k flite wordnet-base

.PHONY: venv demo model acoustic test test-fast lint format clean

$(STAMP): pyproject.toml requirements/models.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# CPU build of PyTorch first: pyproject's range (torch>=2.4) is then already satisfied and
	# pip never pulls a multi-GB CUDA build onto a CPU machine.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[tts,dev,labels,vocab]'
	$(BIN)/python -m pip install -q --no-deps -r requirements/models.txt
	# tests/test_web.py drives Debian's chromium with Playwright (`playwright install` would
	# download a browser); without it those tests skip locally and fail under CI.
	@if [ ! -x /usr/bin/chromium ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; } \
	      || echo "warning: could not install chromium with apt-get; tests/test_web.py will skip"; \
	  else \
	    echo "note: /usr/bin/chromium is missing (installing it needs apt-get and root):" \
	      "tests/test_web.py will skip; run 'apt-get install chromium' as root to enable it"; \
	  fi; \
	fi
	# The voices of `data synth` (data/voices.py): espeak-ng and festival with its ked voice for
	# training, flite for evaluation on unheard voices; without them those voices fail with the
	# apt-get command, and their tests skip locally and fail under CI.
	@if ! command -v espeak-ng >/dev/null 2>&1 || ! command -v text2wave >/dev/null 2>&1 \
	    || ! command -v flite >/dev/null 2>&1 \
	    || [ ! -d /usr/share/festival/voices/english/ked_diphone ] \
	    || [ ! -f /usr/share/wordnet/data.noun ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q $(VOICE_PACKAGES) \
	      || { apt-get update -q && apt-get install -y -q $(VOICE_PACKAGES); } \
	      || echo "warning: could not install $(VOICE_PACKAGES) with apt-get; the espeak, festival and flite voices will be missing"; \
	  else \
	    echo "note: espeak-ng, festival, flite or wordnet-base is missing (installing them needs apt-get and root):" \
	      "run 'apt-get install $(VOICE_PACKAGES)' as root for the training and evaluation voices and texts"; \
	  fi; \
	fi
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/speechllm demo

# The shipped default model's recipe from nothing (docs/recipe.md): base models, the text corpus,
# the joint stage's speech, then the staged training; every step resumes where it stopped, so
# after an interruption run `make model` again. About 3 hours on 2 CPU cores (the text stage:
# 420 steps, 144 minutes of one core).
model: venv
	$(BIN)/speechllm models fetch whisper-tiny.en
	$(BIN)/speechllm models fetch smollm2-135m-instruct
	$(BIN)/speechllm data text-corpus --out work/text
	$(BIN)/speechllm data synth work/text/joint-text.jsonl --out work/joint
	$(BIN)/speechllm train configs/cpu-whisper-route.yaml --resume

# The CTC route's acoustic side at scale (configs/cpu-ctc-route-10h.yaml, docs/recipe.md): ~10 h
# of speech from 98 training voices with augmentation, then the acoustic stage. Resumable: run
# `make acoustic` again after an interruption.
acoustic: venv
	$(BIN)/speechllm models fetch whisper-tiny.en
	$(BIN)/speechllm models fetch smollm2-135m-instruct
	$(BIN)/speechllm data text-corpus --out work/text
	mkdir -p work/acoustic10h
	$(BIN)/speechllm data import wordnet --out work/acoustic10h/wordnet.jsonl --limit 1500
	(awk 'NR % 10 < 7' work/text/slue-train.jsonl; awk 'NR % 6 == 1' work/text/vader-train.jsonl; \
	  cat work/acoustic10h/wordnet.jsonl) > work/acoustic10h/text.jsonl
	$(BIN)/speechllm data synth work/acoustic10h/text.jsonl --out work/acoustic10h \
	  --voice training-voices --augment
	$(BIN)/speechllm train configs/cpu-ctc-route-10h.yaml --resume

# Every test, the end-to-end ones on the real packaged models included (what CI runs).
test: venv
	$(BIN)/python -m pytest -m "e2e or not e2e"

# Unit tests only (tiny random models, no packaged weights): about 2 minutes.
test-fast: venv
	$(BIN)/python -m pytest -m "not e2e"

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: venv
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) work
