# bigrec: the two commands that matter are `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
BIGREC_VARIANT ?= cpu
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: demo test test-fast install data data-synthetic bench clean

$(VENV)/.installed: tools/install.sh setup.cfg pyproject.toml
	BIGREC_VARIANT=$(BIGREC_VARIANT) VENV=$(VENV) bash tools/install.sh
	touch $@

install: $(VENV)/.installed

data/ml-100k/ranking/schema.json: | $(VENV)/.installed
	bash tools/fetch_movielens.sh data/raw/ml-100k
	$(VENV)/bin/bigrec data movielens --source data/raw/ml-100k --output data/ml-100k

data/ml-100k/impressions/schema.json: data/ml-100k/ranking/schema.json
	$(VENV)/bin/bigrec data movielens-impressions --source data/raw/ml-100k --output data/ml-100k/impressions

data: data/ml-100k/ranking/schema.json data/ml-100k/impressions/schema.json

# Synthetic data sets with planted signals (configs/*/*_synthetic.yaml).
data-synthetic: | $(VENV)/.installed
	$(VENV)/bin/bigrec data synthetic-criteo --output data/synthetic/criteo --rows 1000000
	$(VENV)/bin/bigrec data synthetic-behavior --output data/synthetic/behavior
	$(VENV)/bin/bigrec data synthetic-order --output data/synthetic/order
	$(VENV)/bin/bigrec data synthetic-multitask --output data/synthetic/multitask --correlation 0
	$(VENV)/bin/bigrec data synthetic-selection-bias --output data/synthetic/selection_bias
	$(VENV)/bin/bigrec data synthetic-sequences --output data/synthetic/sequences
	$(VENV)/bin/bigrec data synthetic-interests --output data/synthetic/interests
	$(VENV)/bin/bigrec data synthetic-fields --signal cross --output data/synthetic/fields_cross
	$(VENV)/bin/bigrec data synthetic-fields --signal pair --output data/synthetic/fields_pair
	$(VENV)/bin/bigrec data synthetic-fields --signal memorise --output data/synthetic/fields_memorise

# Train DeepFM on MovieLens-100k on 2 ranks through TorchX (local scheduler).
demo: data
	$(VENV)/bin/torchx run -s local_cwd launch/components.py:train \
		--config configs/ranking/deepfm_ml100k.yaml -j 1x2

test: $(VENV)/.installed
	$(PY) -m pytest -q

test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -m "not dist and not e2e"

bench: data
	$(PY) tools/bench/data_bench.py
	$(PY) tools/bench/train_bench.py
	$(PY) tools/bench/models.py

clean:
	rm -rf $(VENV) runs data
