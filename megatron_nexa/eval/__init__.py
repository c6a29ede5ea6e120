"""``nexa-eval``: the pretrained encoder against the baselines practitioners use, on frozen features. The heads,
targets and metrics are ``downstream/``'s, shared with ``finetune/``."""
