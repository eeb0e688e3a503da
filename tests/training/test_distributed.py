"""DDP on CPU (gloo) with a cold cache: rank 0 preprocesses for longer than the process group's
collective timeout while the other ranks wait outside any collective.

The group is created here with a 10 s timeout (NCCL's watchdog gives 10 minutes; LiTS takes
longer than that to preprocess) and every case's preprocessing is slowed to 5 s, so a rank that
waited inside a collective would fail.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from helpers import TINY, write_case

COLLECTIVE_TIMEOUT_S = 10.0
SLOW_CASE_S = 5.0  # x 3 cases: 15 s of preprocessing on rank 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_main(rank: int, world: int, port: int, data: str, out: str) -> None:
    import livseg.data.cache as cache
    from livseg.training.train import train

    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    slow, real = SLOW_CASE_S, cache._preprocess_case

    def slow_case(*args: object, **kwargs: object) -> object:
        time.sleep(slow)
        return real(*args, **kwargs)

    cache._preprocess_case = slow_case  # a spawned process: nothing to undo
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S))
    try:
        config = dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, epochs=1))
        result = train(data, out, config, device="cpu", progress=False)
        assert result.best_epoch == 1
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_cold_cache_longer_than_the_collective_timeout(tmp_path: Path) -> None:
    for n in range(3):
        write_case(tmp_path / "data", n)
    out = tmp_path / "run"
    started = time.monotonic()
    mp.spawn(_rank_main, args=(2, _free_port(), str(tmp_path / "data"), str(out)), nprocs=2, join=True)
    assert time.monotonic() - started > 3 * SLOW_CASE_S > COLLECTIVE_TIMEOUT_S  # the wait really was long
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["cache", "config.json", "splits.json", "metrics.csv", "curves.png", "best.pt", "last.pt"]
    )  # no marker left behind
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["world_size"] == 2 and len(last["rng"]) == 2
