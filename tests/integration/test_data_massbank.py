"""The training data pipeline on the real MassBank shards."""
import json
import shutil

import numpy as np
import pytest
import torch

from megatron_nexa.config import load_config
from megatron_nexa.data.loader import build_dataset, build_loader
from megatron_nexa.data.masking import IGNORE, mz_bins
from megatron_nexa.data.source import DataError, SpectraSource
from megatron_nexa.tokens import TokenType
from tests.conftest import REPO


def config(root, *extra):
    return load_config(REPO / "configs/model/small.yaml", [f"data.sources=[{{path: {root}}}]", "data.num_workers=0",
                                                          "train.micro_batch_size=16", *extra])


def batches(cfg, n, consumed=0, rank=0, dp=1, workers=None):
    if workers is not None:
        cfg.data.num_workers = workers
    loader = build_loader(build_dataset(cfg, "train"), cfg, rank, dp, consumed_samples=consumed)
    it = iter(loader)
    return [next(it) for _ in range(n)]


def test_masking_on_real_spectra(massbank):
    cfg = config(massbank, "data.pair_fraction=0.0")
    for b in batches(cfg, 10):
        masked = b.token_type == TokenType.MASK
        assert torch.equal(b.intensity_target != IGNORE, masked), "loss mask = exactly the masked tokens"
        assert not (b.mz_target != IGNORE)[~masked].any()
        assert ((b.mz[masked] == 0) & (b.intensity[masked] == 0)).all(), "masked tokens keep no values"
        peak = b.token_type == TokenType.PEAK
        assert torch.equal(b.peak_bin[masked], b.mz_target[masked]), "the [CLS] target keeps the masked peaks"
        assert ((b.peak_bin[peak] == b.mz_target.new_tensor(mz_bins(b.mz[peak].numpy(), cfg.model)))).all()
        assert torch.allclose(b.peak_weight[peak], b.intensity[peak].sqrt()) and (b.peak_weight[masked] > 0).all()
        assert (b.peak_bin[~(peak | masked)] == IGNORE).all() and (b.peak_weight[~(peak | masked)] == 0).all()
        assert (b.token_type[:, 0] == TokenType.CLS).all() and (b.token_type[:, 1] == TokenType.PREC).all()
        n_peaks = ((b.token_type == TokenType.PEAK) | masked).sum(1).float()
        frac = masked.sum(1).float() / n_peaks
        assert (masked.sum(1) >= 1).all()
        assert ((frac >= cfg.masking.ratio_min - 0.5 / n_peaks) | (masked.sum(1) == 1)).all()
        assert (frac <= cfg.masking.ratio_max + 0.5 / n_peaks).all()


def test_pairs_follow_rt_order_within_one_run(massbank):
    cfg = config(massbank, "data.pair_fraction=0.5", "data.rt_margin=3.0")
    source = SpectraSource(massbank, "train")
    labels = []
    for b in batches(cfg, 20):
        for row in torch.nonzero(b.is_pair).flatten().tolist():
            a, bb = b.spectra[row].tolist()
            assert source.run[a] == source.run[bb] >= 0, "a pair never crosses runs"
            assert abs(source.rt[a] - source.rt[bb]) > 3.0, "ties and near-ties never pair"
            assert b.ro_label[row] == float(source.rt[a] < source.rt[bb])
            sep = torch.nonzero(b.token_type[row] == TokenType.SEP).flatten()
            assert len(sep) == 1 and (b.segment[row, sep + 1:][b.token_type[row, sep + 1:] != TokenType.PAD] == 1).all()
            labels.append(float(b.ro_label[row]))
    assert len(labels) > 100
    assert 0.4 < np.mean(labels) < 0.6, "labels are balanced"


def test_separate_pairs_are_two_masked_single_rows(massbank):
    cfg = config(massbank, "data.pair_fraction=0.5", "data.pair_input=separate")
    source = SpectraSource(massbank, "train")
    labels = []
    for b in batches(cfg, 10):
        assert not b.is_pair.any() and not (b.token_type == TokenType.SEP).any()
        groups = b.ro_group[b.ro_group >= 0]
        assert all((b.ro_group == g).sum() == 2 for g in groups.unique())
        for g in groups.unique().tolist():
            a, bb = torch.nonzero(b.ro_group == g).flatten().tolist()
            ia, ib = b.spectra[a].tolist()
            assert b.spectra[bb].tolist() == [ib, ia], "row B holds the partner"
            assert source.run[ia] == source.run[ib] >= 0 and abs(source.rt[ia] - source.rt[ib]) > 3.0
            assert b.ro_label[a] == b.ro_label[bb] == float(source.rt[ia] < source.rt[ib])
            assert (b.token_type[[a, bb]] == TokenType.MASK).any(1).all(), "pair rows are masked like any single"
            labels.append(float(b.ro_label[a]))
    assert len(labels) > 50
    assert 0.35 < np.mean(labels) < 0.65, "labels are balanced"


def test_views_are_two_unmasked_augmentations(massbank):
    cfg = config(massbank, "data.view_fraction=0.25", "data.pair_fraction=0.0")
    b = batches(cfg, 1)[0]
    groups = b.view_group[b.view_group >= 0]
    assert len(groups) == 8 and all((groups == g).sum() == 2 for g in groups.unique())
    first = torch.nonzero(b.view_group == groups[0]).flatten()
    assert not torch.equal(b.mz[first[0]], b.mz[first[1]])
    assert not (b.token_type[first] == TokenType.MASK).any()


def test_same_seed_same_batches_and_worker_count_does_not_matter(massbank):
    cfg = config(massbank)
    a, b = batches(cfg, 4), batches(config(massbank), 4, workers=2)
    for x, y in zip(a, b):
        for field in ("token_type", "mz", "mz_target", "is_pair", "ro_label", "spectra"):
            assert torch.equal(getattr(x, field), getattr(y, field))
    other = batches(config(massbank, "train.seed=99"), 1)[0]
    assert not torch.equal(other.spectra, a[0].spectra)


def test_resume_from_consumed_samples_is_exact(massbank):
    cfg = config(massbank)
    full = batches(cfg, 12, rank=1, dp=2)
    resumed = batches(config(massbank), 5, consumed=7 * 16 * 2, rank=1, dp=2)
    for x, y in zip(full[7:], resumed):
        assert torch.equal(x.mz, y.mz) and torch.equal(x.mz_target, y.mz_target) and torch.equal(x.spectra, y.spectra)


def test_blend_of_two_versions(massbank, tmp_path):
    cfg = config(massbank)
    cfg.data.sources.append(type(cfg.data.sources[0])(path=str(massbank), weight=3.0))
    seen = torch.cat([b.source for b in batches(cfg, 10)])
    assert 0.65 < (seen == 1).float().mean() < 0.85


@pytest.fixture
def copy_of(massbank, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(massbank, dst, ignore=shutil.ignore_patterns("cache"))
    return dst


def test_nan_in_a_shard_names_shard_and_index(copy_of):
    source = SpectraSource(copy_of, "val")
    prefix = source.view.prefixes[0]
    data = np.fromfile(prefix + ".bin", dtype=np.float32)
    data[source.view.shard_peaks(0).pointers[3] // 4] = np.nan  # first m/z of spectrum 3
    data.tofile(prefix + ".bin")
    fresh = SpectraSource(copy_of, "val")
    with pytest.raises(DataError, match=r"val_00000\.bin: spectrum 3 .*non-finite"):
        fresh.peaks(3)


def test_manifest_shard_mismatch_is_named(copy_of):
    manifest = json.loads((copy_of / "manifest.json").read_text())
    manifest["shards"]["val"][0]["num_spectra"] += 1
    manifest["counts"]["per_split"]["val"] += 1
    (copy_of / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="val"):
        SpectraSource(copy_of, "val").peaks(0)


def test_zero_peak_spectrum_is_named(copy_of):
    from megatron_nexa.data.indexed import index_bytes

    source = SpectraSource(copy_of, "test")
    prefix = source.view.prefixes[0]
    peaks = source.view.shard_peaks(0)
    sizes = peaks.sizes.copy()
    data = np.fromfile(prefix + ".bin", dtype=np.float32)
    start = peaks.pointers[2] // 4
    data = np.concatenate([data[:start], data[start + sizes[2]:]])
    sizes[2] = 0
    data.tofile(prefix + ".bin")
    open(prefix + ".idx", "wb").write(index_bytes(sizes))
    with pytest.raises(DataError, match=r"test_00000\.bin: spectrum 2 .*no peaks"):
        SpectraSource(copy_of, "test").peaks(2)
