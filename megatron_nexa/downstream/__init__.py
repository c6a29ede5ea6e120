"""What evaluation (``eval/``) and fine-tuning (``finetune/``) both use: inputs for heads (``features``),
supervised targets (``targets``), the heads and their fitting loop (``heads``, ``fit``), scores (``metrics``,
``retrieval``) and candidate-structure ranking (``candidates``). Both drive this core; neither imports the other."""
