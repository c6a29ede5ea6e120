"""``nexa-finetune``: post-pretraining heads (card §9) trained on top of the encoder, through DeepSpeed, and the
report over runs. The heads, targets and metrics are ``downstream/``'s, shared with ``eval/``."""
