"""livseg.inference.pipeline: the three stages really overlap, keep order, bound the prefetch, and
stop cleanly at the first failure (items before it written, none after)."""

from __future__ import annotations

import threading

import pytest

from livseg.inference.pipeline import run_pipeline

WAIT_S = 10.0  # a stage waiting this long for another means they did not overlap


def test_loading_and_writing_overlap_the_compute_stage() -> None:
    loading_1 = threading.Event()  # set while item 1 is being loaded
    written_0 = threading.Event()  # set once item 0 is written

    def load(item: int) -> int:
        if item == 1:
            loading_1.set()
        return item * 10

    def compute(item: int, loaded: int) -> int:
        if item == 0:  # the loader must read item 1 while item 0 computes
            assert loading_1.wait(WAIT_S), "item 1 was not loaded during item 0's compute"
        if item == 1:  # the writer must write item 0 while item 1 computes
            assert written_0.wait(WAIT_S), "item 0 was not written during item 1's compute"
        return loaded + 1

    def write(item: int, loaded: int, computed: int) -> tuple[int, int]:
        if item == 0:
            written_0.set()
        return item, computed

    assert run_pipeline([0, 1, 2], load, compute, write) == [(0, 1), (1, 11), (2, 21)]


@pytest.mark.parametrize("prefetch", [1, 2])
def test_the_loader_stays_at_most_prefetch_items_ahead(prefetch: int) -> None:
    lock = threading.Lock()
    loaded: list[int] = []
    computed: list[int] = []
    ahead: list[int] = []

    def load(item: int) -> int:
        with lock:
            loaded.append(item)
            ahead.append(len(loaded) - len(computed))
        return item

    def compute(item: int, value: int) -> int:
        threading.Event().wait(0.02)  # let the loader run ahead as far as it may
        with lock:
            computed.append(item)
        return value

    assert run_pipeline(list(range(6)), load, compute, lambda i, a, b: b, prefetch=prefetch) == list(range(6))
    assert max(ahead) == prefetch + 1  # the one being computed, plus the prefetched ones


@pytest.mark.parametrize("overlap", [True, False])
@pytest.mark.parametrize("stage", ["load", "compute", "write"])
def test_the_first_failure_stops_the_batch(stage: str, overlap: bool) -> None:
    written: list[int] = []
    loads: list[int] = []

    def fail_at_2(name: str, item: int) -> None:
        if stage == name and item == 2:
            raise ValueError(f"{name} failed on {item}")

    def load(item: int) -> int:
        loads.append(item)
        fail_at_2("load", item)
        return item

    def compute(item: int, value: int) -> int:
        fail_at_2("compute", item)
        return value

    def write(item: int, value: int, computed: int) -> int:
        fail_at_2("write", item)
        written.append(item)
        return item

    with pytest.raises(ValueError, match=f"{stage} failed on 2"):
        run_pipeline(list(range(8)), load, compute, write, overlap=overlap)
    assert written == [0, 1]  # everything before the failure, nothing after it
    assert max(loads) <= 4  # reading stopped soon after (at most the prefetch and one in flight)
    assert not [t for t in threading.enumerate() if t.name.startswith("livseg-")]  # no stage left running


def test_an_earlier_write_failure_wins_over_a_later_compute_failure() -> None:
    def compute(item: int, value: int) -> int:
        if item == 1:
            raise KeyError("compute 1")
        return value

    def write(item: int, value: int, computed: int) -> int:
        raise OSError("disk full on 0")

    with pytest.raises(OSError, match="disk full on 0"):
        run_pipeline([0, 1, 2], lambda i: i, compute, write)
