"""megatron_nexa: pretrain Nexa-Spec, an encoder-only transformer for MS/MS spectra."""
__version__ = "0.1.0"
