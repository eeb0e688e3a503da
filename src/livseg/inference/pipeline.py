"""A batch in three overlapping stages: read the next case while the network runs this one, and
write the previous one meanwhile.

:func:`run_pipeline` calls ``load(item)`` in a loader thread (at most ``prefetch`` items ahead of
the network), ``compute(item, loaded)`` in the calling thread (the network, where the model and
its CUDA context live) and ``write(item, loaded, computed)`` in a writer thread, in item order.
Threads, not processes: torch releases the GIL inside its kernels and zlib, numpy and file I/O
release it too, so reading and writing proceed while the network computes, without copying
volumes between processes.

Failure: the first item that fails, in any stage, stops the batch. Every item before it is
written completely; no item after it is written (the writer drops what was computed after a
failure); the exception is raised in the caller once both threads have finished, so no write is
cut off half-way and no temporary file is left behind.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Generic, Sequence, TypeVar

__all__ = ["run_pipeline"]

Item = TypeVar("Item")
Loaded = TypeVar("Loaded")
Computed = TypeVar("Computed")
Result = TypeVar("Result")

_POLL_S = 0.1  # how often a waiting thread looks whether the batch was stopped
_END = object()


class _Batch(Generic[Result]):
    """State the three stages share."""

    def __init__(self, prefetch: int) -> None:
        self.stop = threading.Event()  # set when the batch must end early
        self.slots = threading.Semaphore(prefetch)  # loaded items not yet taken by the network
        self.loaded: queue.Queue = queue.Queue()
        self.to_write: queue.Queue = queue.Queue(maxsize=1)
        self.results: list[Result] = []
        self.write_error: BaseException | None = None


def run_pipeline(
    items: Sequence[Item],
    load: Callable[[Item], Loaded],
    compute: Callable[[Item, Loaded], Computed],
    write: Callable[[Item, Loaded, Computed], Result],
    *,
    prefetch: int = 1,
    on_written: Callable[[Result], None] | None = None,
    overlap: bool = True,
) -> list[Result]:
    """Run ``load -> compute -> write`` over ``items`` with the stages overlapping.

    Args:
        items: the work, in order.
        load: runs in the loader thread (reading files).
        compute: runs in the calling thread (the network).
        write: runs in the writer thread, item by item in order (writing files).
        prefetch: how many loaded items may wait for ``compute`` (memory: each is a volume).
        on_written: called in the writer thread after each item is written (progress bars).
        overlap: False runs the three stages one after another in the calling thread (one item
            in memory at a time), with the same results and the same failure rule.

    Returns:
        ``write``'s result for every item, in order.

    Raises:
        Whatever the first failing item raised (items before it are written, none after it).
    """
    if prefetch < 1:
        raise ValueError(f"prefetch must be at least 1, got {prefetch}")
    if not overlap:
        results = []
        for item in items:
            loaded = load(item)
            results.append(write(item, loaded, compute(item, loaded)))
            if on_written is not None:
                on_written(results[-1])
        return results
    batch: _Batch[Result] = _Batch(prefetch)
    loader = threading.Thread(target=_load_all, args=(batch, items, load), name="livseg-loader", daemon=False)
    writer = threading.Thread(target=_write_all, args=(batch, write, on_written), name="livseg-writer", daemon=False)
    loader.start()
    writer.start()
    error: BaseException | None = None
    try:
        for _ in items:
            entry = _next_loaded(batch)
            if entry is None:  # the writer failed: nothing more is written
                break
            item, loaded, load_error = entry
            if load_error is not None:
                raise load_error
            # blocks while the writer is busy with the previous item; the writer always drains
            batch.to_write.put((item, loaded, compute(item, loaded)))
    except BaseException as exc:  # noqa: BLE001 (re-raised below, after the threads are done)
        error = exc
    finally:
        batch.stop.set()  # the loader stops; the writer finishes what was computed before the failure
        batch.to_write.put(_END)
        writer.join()
        loader.join()
    if batch.write_error is not None:  # it belongs to an earlier item than any error here
        raise batch.write_error
    if error is not None:
        raise error
    return batch.results


def _load_all(batch: _Batch, items: Sequence, load: Callable) -> None:
    for item in items:
        while not batch.slots.acquire(timeout=_POLL_S):
            if batch.stop.is_set():
                return
        if batch.stop.is_set():
            return
        try:
            batch.loaded.put((item, load(item), None))
        except BaseException as exc:  # noqa: BLE001 (handed to the caller's thread)
            batch.loaded.put((item, None, exc))
            return


def _next_loaded(batch: _Batch) -> tuple | None:
    """The next loaded item for the network; None once the writer has failed."""
    while True:
        if batch.write_error is not None:
            return None
        try:
            entry = batch.loaded.get(timeout=_POLL_S)
        except queue.Empty:
            continue
        batch.slots.release()
        return entry


def _write_all(batch: _Batch, write: Callable, on_written: Callable | None) -> None:
    while True:
        job = batch.to_write.get()
        if job is _END:
            return
        if batch.write_error is not None:
            continue  # computed after a failed item: dropped, never written
        try:
            result = write(*job)
        except BaseException as exc:  # noqa: BLE001 (handed to the caller's thread)
            batch.write_error = exc
            continue
        batch.results.append(result)
        if on_written is not None:
            on_written(result)
