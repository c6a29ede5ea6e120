# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# torch is installed first and pinned: an unpinned torch pulls a multi-GB CUDA build.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv demo eval finetune test clean

venv: $(STAMP)

$(STAMP): setup.py constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -c constraints.txt -e ".[hf,chem,s3,dev]"
	touch $(STAMP)

DATA   ?= data_out
MASSBANK ?= ../shared/data/massbank

demo: venv
	$(PY) -m megatron_nexa.cli.plan --model configs/model/small.yaml
	$(PY) -m megatron_nexa.cli.preprocess $(MASSBANK)/*.mgf.gz --out $(DATA) --name massbank --version 1 --workers 2
	$(PY) -m megatron_nexa.cli.dataset verify $(DATA)/massbank_v1
	$(PY) -m megatron_nexa.cli.dataset stats $(DATA)/massbank_v1
	OMP_NUM_THREADS=1 DS_ACCELERATOR=cpu $(VENV)/bin/deepspeed --num_gpus 2 --master_port 29517 pretrain_nexa.py \
		--ds_config ds_configs/zero3_cpu.json --config configs/demo.yaml

# After `make demo`: export the demo model and score fingerprint/RT heads on frozen features against baselines.
eval: demo
	$(PY) -m megatron_nexa.cli.convert to-hf runs/demo hf/demo
	$(PY) -m megatron_nexa.cli.eval --model hf/demo --data $(DATA)/massbank_v1 --out runs/demo/eval.json

# After `make eval`: fine-tune each head on the demo encoder (frozen 100 steps, then unfrozen), test-split scores.
finetune: eval
	for task in fingerprint rt ccs contrastive; do \
		OMP_NUM_THREADS=2 $(PY) -m megatron_nexa.cli.finetune --config configs/finetune/$$task.yaml || exit 1; done

test: venv
	DS_ACCELERATOR=cpu $(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
