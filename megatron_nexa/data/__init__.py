"""Data: spectra readers, preprocessing into indexed shards, datasets and batches. Never imports model/."""
