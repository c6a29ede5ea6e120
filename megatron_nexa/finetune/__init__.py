"""Post-pretraining heads (card §9) trained on top of the encoder's embeddings."""
