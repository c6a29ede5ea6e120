"""Checkpoint selection pieces that need no engine: the size check, and setting a rejected checkpoint aside."""
from megatron_nexa.engine.checkpoint import COMPLETE, FILES, Checkpointer, file_sizes, problem


def make(tag_dir, content=b"x" * 100):
    tag_dir.mkdir(parents=True)
    (tag_dir / "model_states.pt").write_bytes(content)
    (tag_dir / FILES).write_text(__import__("json").dumps(file_sizes(tag_dir)))
    (tag_dir / COMPLETE).write_text("1\n")


def test_a_short_file_is_named_with_both_sizes(tmp_path):
    make(tmp_path / "step_00000002")
    assert problem(tmp_path / "step_00000002") is None
    (tmp_path / "step_00000002/model_states.pt").write_bytes(b"x" * 10)
    assert problem(tmp_path / "step_00000002") == (f"{tmp_path}/step_00000002/model_states.pt has 10 bytes, 100 when "
                                                    f"saved (truncated or overwritten)")
    (tmp_path / "step_00000002/model_states.pt").unlink()
    assert problem(tmp_path / "step_00000002").endswith("model_states.pt is missing")


def test_the_same_tag_rejected_again_gets_its_own_place(parallel, tmp_path):
    """A tag rejected, re-saved and rejected again must not nest in, or collide with, the first rejection."""
    ckpt = Checkpointer(tmp_path, keep_last=3, warn=lambda _: None)
    places = []
    for n in range(3):
        make(ckpt.dir / "step_00000006", content=bytes([n]) * 100)
        places.append(ckpt._set_aside("step_00000006"))
    assert [p.name for p in places] == ["step_00000006", "step_00000006.2", "step_00000006.3"]
    assert [(p / "model_states.pt").read_bytes()[0] for p in places] == [0, 1, 2]
    assert not (ckpt.dir / "step_00000006").exists()

