"""Evaluation of the pretrained encoder against the baselines practitioners use."""
