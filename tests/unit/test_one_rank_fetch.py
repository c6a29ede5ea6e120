"""``one_rank_fetch``'s wait skips DeepSpeed's host sync only where it guards nothing: a shard already on the
device, not quantised. Otherwise DeepSpeed's own wait runs."""
from types import SimpleNamespace

import torch

from megatron_nexa.compat.deepspeed import OneRankFetch as one_rank_fetch

CPU = torch.device("cpu")


def shard(device="cpu", quantised=False):
    t = torch.zeros(4, device=device)
    if quantised:
        t.ds_quant_scale = torch.ones(1)
    return SimpleNamespace(ds_tensor=t, ds_status=None)


def test_needs_host_sync_only_for_offloaded_or_quantised_shards():
    assert not one_rank_fetch.needs_host_sync([shard(), shard()], CPU)
    assert one_rank_fetch.needs_host_sync([shard(), shard("meta")], CPU)  # one shard held elsewhere
    assert one_rank_fetch.needs_host_sync([shard(quantised=True)], CPU)
    assert not one_rank_fetch.needs_host_sync([], CPU)


class NoGatherHandle:  # the shape of DeepSpeed's: name-mangled private param and completion flag
    def __init__(self, param):
        self.__param, self.__complete = param, False


class NoGatherCoalescedHandle:
    def __init__(self, params):
        self.__params, self.__complete = params, False


def test_wait_marks_available_and_falls_back_to_deepspeeds():
    from deepspeed.runtime.zero.partition_parameters import ZeroParamStatus

    called = []
    for cls, make in ((NoGatherHandle, lambda p: p[0]), (NoGatherCoalescedHandle, list)):
        wait = one_rank_fetch._without_sync(cls, lambda self, **kw: called.append(self))
        local = [shard(), shard()]
        handle = cls(make(local))
        wait(handle)
        assert all(p.ds_status == ZeroParamStatus.AVAILABLE for p in ([local[0]] if cls is NoGatherHandle else local))
        wait(handle)  # complete: nothing again
        assert not called
        offloaded = cls(make([shard("meta"), shard()]))
        wait(offloaded)
        assert called == [offloaded]
        called.clear()


def test_install_is_idempotent_and_uninstall_restores():
    from deepspeed.runtime.zero import partition_parameters as pp

    before = pp.NoGatherHandle.wait, pp.NoGatherCoalescedHandle.wait  # an engine built earlier may have installed it
    one_rank_fetch.uninstall()
    original = pp.NoGatherHandle.wait, pp.NoGatherCoalescedHandle.wait
    try:
        one_rank_fetch.install()
        ours = pp.NoGatherHandle.wait, pp.NoGatherCoalescedHandle.wait
        one_rank_fetch.install()
        assert one_rank_fetch.installed() and (pp.NoGatherHandle.wait, pp.NoGatherCoalescedHandle.wait) == ours
        assert ours[0].deepspeed_wait is original[0] and ours[1].deepspeed_wait is original[1]
        one_rank_fetch.uninstall()
        assert not one_rank_fetch.installed()
        assert (pp.NoGatherHandle.wait, pp.NoGatherCoalescedHandle.wait) == original
    finally:
        pp.NoGatherHandle.wait, pp.NoGatherCoalescedHandle.wait = before
