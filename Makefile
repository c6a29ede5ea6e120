# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# torch is installed first and pinned: an unpinned torch pulls a multi-GB CUDA build.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv data data-lab-disjoint demo pretrain-small pretrain-lab-disjoint hf eval finetune test clean

venv: $(STAMP)

$(STAMP): setup.py constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -c constraints.txt -e ".[hf,chem,baselines,s3,dev]"
	touch $(STAMP)

DATA   ?= data_out
MASSBANK ?= ../shared/data/massbank

data: venv
	$(PY) -m megatron_nexa.cli.preprocess $(MASSBANK)/*.mgf.gz --out $(DATA) --name massbank --version 2 --workers 2 \
		--split-fractions 0.90 0.02 0.08
	$(PY) -m megatron_nexa.cli.dataset verify $(DATA)/massbank_v2
	$(PY) -m megatron_nexa.cli.dataset stats $(DATA)/massbank_v2

# The labs nexa-eval holds out of massbank_v2 by default (--lab-fraction 0.15, seed 0). `eval` names them
# (EVAL_LABS=--lab-fraction=0 trains on every lab), and massbank_trainlabs_v2 is massbank_v2 without them:
# pretraining on it keeps the lab-disjoint test new to the encoder.
HELDOUT_LABS ?= ACES_SU,Boise_State_Univ,CASMI_2012,CPU,Env_Anal_Chem_U_Tuebingen,IPB_Halle,LCSB,Literature_Specs,MSSJ,MetaboLights,NAIST,NILU,Osaka_MCHRI,PFOS_research_group,RIKEN,Univ_Toyama,UoB,UvA_IBED
EVAL_LABS ?= --holdout-labs $(HELDOUT_LABS)
data-lab-disjoint: venv
	$(PY) -m megatron_nexa.cli.preprocess $(MASSBANK)/*.mgf.gz --out $(DATA) --name massbank_trainlabs --version 2 \
		--workers 2 --split-fractions 0.90 0.02 0.08 --exclude-labs $(HELDOUT_LABS)
	$(PY) -m megatron_nexa.cli.dataset verify $(DATA)/massbank_trainlabs_v2

demo: data
	$(PY) -m megatron_nexa.cli.plan --model configs/model/small.yaml
	OMP_NUM_THREADS=1 DS_ACCELERATOR=cpu $(VENV)/bin/deepspeed --num_gpus 2 --master_port 29517 pretrain_nexa.py \
		--ds_config ds_configs/zero3_cpu.json --config configs/demo.yaml

# About an hour on 2 cores: `small` pretrained 4,000 steps with contrastive views (runs/massbank_small);
# then `make eval RUN=runs/massbank_small`. SMALL=configs/massbank_small_cls.yaml adds the [CLS] spectrum
# objective (runs/massbank_small_cls).
SMALL ?= configs/massbank_small.yaml
pretrain-small: data
	OMP_NUM_THREADS=1 DS_ACCELERATOR=cpu $(VENV)/bin/deepspeed --num_gpus 2 --master_port 29518 pretrain_nexa.py \
		--ds_config ds_configs/zero3_cpu.json --config $(SMALL)

# About an hour on 2 cores: the recipe judged on the lab-disjoint test, pretrained without the held-out labs
# (runs/massbank_small_lab_disjoint); then `make eval RUN=runs/massbank_small_lab_disjoint`.
pretrain-lab-disjoint: data-lab-disjoint
	OMP_NUM_THREADS=1 DS_ACCELERATOR=cpu $(VENV)/bin/deepspeed --num_gpus 2 --master_port 29519 pretrain_nexa.py \
		--ds_config ds_configs/zero3_cpu.json --config configs/massbank_small_lab_disjoint.yaml

# Export a run (default: the demo's) to Hugging Face format; `eval` scores fingerprint/RT heads on frozen
# features, retrieval and candidate ranking against baselines. RUN=runs/massbank_small judges the longer-pretrained model.
RUN ?= runs/demo
HF  ?= $(if $(filter runs/demo,$(RUN)),hf/demo,$(RUN)/hf)
hf: $(if $(filter runs/demo,$(RUN)),demo,venv)
	$(PY) -m megatron_nexa.cli.convert to-hf $(RUN) $(HF)

eval: hf data
	$(PY) -m megatron_nexa.cli.eval --model $(HF) --data $(DATA)/massbank_v2 $(EVAL_LABS) --out $(RUN)/eval.json

# Fine-tune each head on the run's encoder and, as the baseline, on the same architecture from fresh weights
# (frozen 100 steps, then unfrozen), once per seed; then one table with mean ± SD over seeds and pretrained
# minus random-init with a 95 % interval over test structures.
SEEDS ?= 0 1 2
finetune: hf
	for seed in $(SEEDS); do for task in fingerprint rt ccs contrastive; do for init in pretrained random; do \
		OMP_NUM_THREADS=2 $(PY) -m megatron_nexa.cli.finetune --config configs/finetune/$$task.yaml --init=$(HF) \
			--random_init=$$( [ $$init = random ] && echo true || echo false ) --seed=$$seed \
			--out_dir=$(RUN)/finetune_$${task}_$${init}_s$$seed || exit 1; done; done; done
	$(PY) -m megatron_nexa.finetune.report $(RUN) | tee $(RUN)/finetune.txt

test: venv
	DS_ACCELERATOR=cpu $(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
