"""The real MassBank spectra through the real CLI: counts, resume after kill -9, workers, S3 bucket."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from megatron_nexa.data.manifest import Manifest, verify
from tests.conftest import REPO, SHARED

MASSBANK = sorted(str(p) for p in (SHARED / "data/massbank").glob("*.mgf.gz"))
pytestmark = pytest.mark.skipif(len(MASSBANK) != 4, reason="../shared/data/massbank is missing")


def cli(out, *extra, workers=2):
    return [sys.executable, "-m", "megatron_nexa.cli.preprocess", *MASSBANK, "--out", str(out), "--name", "massbank",
            "--version", "1", "--workers", str(workers), "--shard-size", "1MB", "--no-progress", *extra]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    subprocess.run(cli(out), check=True, cwd=REPO)
    return out / "massbank_v1"


def test_every_spectrum_is_accounted_for(reference):
    m = Manifest.load(str(reference))
    c = m.counts
    assert c["records_in"] == 68_750  # PROVENANCE.md
    assert c["records_in"] == c["written"] + c["rejected"]
    assert sum(1 for _ in open(reference / "rejects.jsonl")) == c["rejected"]
    assert c["per_split"]["val"] > 0 and c["per_split"]["test"] > 0
    assert c["per_split"]["train"] / c["written"] > 0.95
    assert len(m.shards["train"]) >= 10  # 1 MB shards
    assert verify(str(reference)) == []


def test_one_worker_gives_the_same_bytes(reference, tmp_path):
    subprocess.run(cli(tmp_path, workers=1), check=True, cwd=REPO)
    assert (tmp_path / "massbank_v1/manifest.json").read_text() == (reference / "manifest.json").read_text()


def test_resume_after_kill_9_is_identical(reference, tmp_path):
    rng = random.Random(7)
    kills = 0
    for delay in (0.8, 2.0, 3.0, 3.8, rng.uniform(1, 4)):
        proc = subprocess.Popen(cli(tmp_path), cwd=REPO, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole process group, workers included
            kills += 1
        proc.wait()
        if (tmp_path / "massbank_v1/manifest.json").exists():  # written last: a kill after it leaves a whole dataset
            assert verify(str(tmp_path / "massbank_v1")) == [], proc.returncode
    subprocess.run(cli(tmp_path), check=True, cwd=REPO)
    assert kills >= 2
    assert (tmp_path / "massbank_v1/manifest.json").read_text() == (reference / "manifest.json").read_text()
    assert (tmp_path / "massbank_v1/rejects.jsonl").read_bytes() == (reference / "rejects.jsonl").read_bytes()
    assert verify(str(tmp_path / "massbank_v1")) == []
    assert not (tmp_path / "massbank_v1.partial").exists() and not (tmp_path / "massbank_v1.work").exists()


def test_s3_bucket_destination(reference, tmp_path):
    """A real S3 HTTP API on loopback (moto's server), reached through s3fs like a Wasabi bucket."""
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
               "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                     aws_access_key_id="test", aws_secret_access_key="test").create_bucket(Bucket="nexa")
        out = "s3://nexa/processed"
        subprocess.run(cli(out, "--work-dir", str(tmp_path / "work")), check=True, cwd=REPO, env=env)
        check = subprocess.run([sys.executable, "-m", "megatron_nexa.cli.dataset", "verify",
                                f"{out}/massbank_v1"], cwd=REPO, env=env, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        code = ("import fsspec, sys; sys.stdout.write(fsspec.open('s3://nexa/processed/massbank_v1/manifest.json', 'r')"
                ".open().read())")
        remote = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        ours, theirs = json.loads(remote.stdout), json.loads((reference / "manifest.json").read_text())
        assert ours["shards"] == theirs["shards"] and ours["counts"] == theirs["counts"]
        local = tmp_path / "synced"
        subprocess.run([sys.executable, "-m", "megatron_nexa.cli.dataset", "sync", f"{out}/massbank_v1", str(local)],
                       cwd=REPO, env=env, check=True, capture_output=True)
        assert verify(str(local)) == []
    finally:
        server.stop()


def test_excluded_labs_are_rejected_and_counted_and_the_structure_split_stays(reference, tmp_path):
    """``--exclude-labs``: a pretraining version that nexa-eval's lab hold-out can trust. Every spectrum of the
    labs (and of ``Eawag_Additional_Specs`` with ``Eawag``) is rejected under its own reason, and the others keep
    the split they have in the full version, since the split follows the structure alone."""
    import pyarrow.parquet as pq

    from megatron_nexa.data.labs import labs_of
    from megatron_nexa.eval.lab_split import split_by_lab

    for names, message in (("LCSB,lcsb,CASMI", "no spectrum is from a lab named CASMI (did you mean CASMI_2012, "
                                               "CASMI_2016?); no spectrum is from a lab named lcsb (did you mean LCSB?)"),
                           ("LCSB,Eawag_Additional_Specs", "Eawag_Additional_Specs is part of lab Eawag")):
        bad = subprocess.run(cli(tmp_path, "--exclude-labs", names), cwd=REPO, capture_output=True, text=True)
        assert bad.returncode == 2 and message in bad.stderr and "Nothing was written" in bad.stderr, bad.stderr
        assert not list(tmp_path.iterdir()), "a dataset with a misspelt lab in it would leak that lab"
    done = subprocess.run(cli(tmp_path, "--exclude-labs", "LCSB,Eawag"), check=True, cwd=REPO,
                          capture_output=True, text=True)
    out = tmp_path / "massbank_v1"
    m, full = Manifest.load(str(out)), Manifest.load(str(reference))
    c = m.counts
    assert f"excluded labs: Eawag {c['rejected_by_reason']['from excluded lab Eawag']:,}, LCSB " in done.stdout
    assert c["records_in"] == c["written"] + c["rejected"] == 68_750
    assert m.settings["exclude_labs"] == ["Eawag", "LCSB"] and "exclude_labs" not in full.settings
    again = subprocess.run(cli(tmp_path, "--exclude-labs", "Eawag,LCSB,LCSB"), check=True, cwd=REPO,
                           capture_output=True, text=True)
    assert "already complete" in again.stdout  # the same labs in another order: the same dataset

    def table(root, split):
        shards = Manifest.load(str(root)).shards[split]
        return [r for s in shards for r in pq.read_table(root / "shards" / split / f"{s['name']}.parquet",
                                                          columns=["run_id", "record_id", "source_file"]).to_pylist()]

    kept = {split: table(out, split) for split in ("train", "val", "test")}
    labs = {lab for rows in kept.values() for lab in labs_of(r["run_id"] for r in rows)}
    assert not labs & {"LCSB", "Eawag", "Eawag_Additional_Specs"} and "BAFG" in labs
    full_rows = {split: table(reference, split) for split in ("train", "val", "test")}
    held = split_by_lab({k: [r["run_id"] for r in v] for k, v in full_rows.items()}, held_out=["LCSB", "Eawag"])
    by_lab = {lab: c["rejected_by_reason"].get(f"from excluded lab {lab}", 0) for lab in held.held_out}
    for lab in held.held_out:  # also those a full build rejects for another reason
        assert by_lab[lab] >= sum(held.spectra[lab].values()) > 0, lab
    ids = {name: {split: {(r["source_file"], r["record_id"]) for r in rows[split]} for split in rows}
           for name, rows in (("kept", kept), ("full", full_rows))}
    for split in ("train", "val", "test"):
        for other in {"train", "val", "test"} - {split}:
            assert not ids["kept"][split] & ids["full"][other], (split, other)
    assert ids["kept"]["test"] == {(r["source_file"], r["record_id"]) for i, r in enumerate(full_rows["test"])
                                   if i in set(held.test.tolist())}


def test_the_makefiles_held_out_labs_are_nexa_evals_default_choice(reference):
    """``make data-lab-disjoint`` keeps out, and ``make eval`` holds out, the labs nexa-eval picks by default."""
    import re

    import pyarrow.parquet as pq

    from megatron_nexa.eval.lab_split import split_by_lab

    m = Manifest.load(str(reference))
    run_ids = {split: [r for s in m.shards[split] for r in pq.read_table(
        reference / "shards" / split / f"{s['name']}.parquet", columns=["run_id"]).column("run_id").to_pylist()]
        for split in ("train", "val", "test")}
    listed = re.search(r"^HELDOUT_LABS \?= (\S+)$", (REPO / "Makefile").read_text(), re.M).group(1).split(",")
    assert tuple(sorted(listed)) == split_by_lab(run_ids, 0.15, seed=0).held_out
