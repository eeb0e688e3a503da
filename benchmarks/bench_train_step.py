"""Training step time in the loop against the bare step, and augmentation before/after the move
to torch on the training device.

Run by hand (not in CI):

    python benchmarks/bench_train_step.py                              # CPU: demo and default presets
    python benchmarks/bench_train_step.py --device cuda --presets paper default --steps 30

For each preset, the median time per training step (forward, AdvancedComboLoss, backward, Adam,
through livseg's own ``train_one_epoch``) of:

``bare``            the same batch already on the device, no loader, no augmentation;
``loop``            ``make_train_loader`` over in-memory cases (as training holds a cache that
                    fits in RAM), with the preset's augmentation as training runs it now: the
                    loader draws the parameters, ``augment_batch`` applies them on the device;
``loop, scipy aug`` (presets with augmentation) the former pipeline: ``scipy.ndimage`` per
                    sample in the loader (workers: ``--workers``), the batch moved afterwards;

and the augmentation alone per batch, both ways. Paths alternate step by step, so the
ratios come from one run on a noisy machine; the process CPU time per step is shown too (with
``--threads 1`` it measures the work done, which other jobs on a shared machine barely change). Peak memory is the CUDA allocator's maximum per
path (on CPU it is not separable per path and is not shown). Mixed precision follows
``livseg.device``'s rule (bf16 from compute capability 8.0, fp16 + GradScaler before).
Writes benchmarks/results/bench_train_step.csv.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch.utils.data import DataLoader, Dataset

from livseg.config import AugmentConfig, RunConfig, get_preset
from livseg.data.augmentation import augment_batch, draw_params
from livseg.device import autocast_dtype, cpu_count
from livseg.nn.losses import AdvancedComboLoss
from livseg.nn.model import UNet3D
from livseg.training.distributed import DistInfo
from livseg.training.loops import make_train_loader, train_one_epoch

RESULTS = Path(__file__).resolve().parent / "results"
N_CASES = 8  # in-memory training cases; loaders cycle through them epoch after epoch


class Cases(Dataset):
    """``n`` smooth random volumes with a blob label, in memory, as CachedDataset serves them."""

    def __init__(self, n: int, shape: tuple[int, int, int]) -> None:
        rng = np.random.default_rng(0)
        self.items = []
        for k in range(n):
            image = ndimage.gaussian_filter(rng.random(shape, dtype=np.float32), 2.0)
            image = (image - image.min()) / (np.ptp(image) + 1e-6)
            self.items.append({"image": torch.from_numpy(image)[None], "label": torch.from_numpy(
                (image > 0.5).astype(np.float32))[None], "case_id": f"case-{k}"})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        return {"image": item["image"].clone(), "label": item["label"].clone(), "case_id": item["case_id"]}


# ---------------------------------------------------------------- the former (scipy) augmentation


def scipy_augment(image: np.ndarray, label: np.ndarray, config: AugmentConfig,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """livseg's augmentation before it moved to torch (same draws, same order), for comparison."""
    flips = rng.random(3) < config.flip_prob
    do_affine = rng.random() < config.prob
    angle = math.radians(rng.uniform(-config.rotate_deg, config.rotate_deg))
    scale = rng.uniform(1.0 - config.scale_range, 1.0 + config.scale_range)
    gain = rng.uniform(1.0 - config.intensity_scale, 1.0 + config.intensity_scale)
    shift = rng.uniform(-config.intensity_shift, config.intensity_shift)
    axes = tuple(ax - 3 for ax in range(3) if flips[ax])
    if axes:
        image, label = np.flip(image, axis=axes), np.flip(label, axis=axes)
    if do_affine and (config.rotate_deg > 0 or config.scale_range > 0):
        cos, sin = math.cos(angle), math.sin(angle)
        matrix = np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]]) / scale
        centre = (np.asarray(image.shape[-3:], dtype=float) - 1.0) / 2.0
        offset = centre - matrix @ centre
        out_i, out_l = np.empty_like(image), np.empty_like(label)
        for c in range(image.shape[0]):
            ndimage.affine_transform(np.ascontiguousarray(image[c]), matrix, offset=offset, order=1, mode="nearest",
                                     output=out_i[c], prefilter=False)
            ndimage.affine_transform(np.ascontiguousarray(label[c]), matrix, offset=offset, order=0, mode="nearest",
                                     output=out_l[c], prefilter=False)
        image, label = out_i, out_l
    image = image * np.float32(gain) + np.float32(shift)
    if config.noise_std > 0:
        image = image + rng.standard_normal(image.shape, dtype=np.float32) * np.float32(config.noise_std)
    return np.ascontiguousarray(image), np.ascontiguousarray(label)


class ScipyView(Dataset):
    """The former AugmentedView: scipy augmentation per sample inside the DataLoader."""

    def __init__(self, base: Dataset, config: AugmentConfig, seed: int, epoch: int) -> None:
        self.base, self.config, self.seed, self.epoch = base, config, seed, epoch

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.base[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image, label = scipy_augment(item["image"].numpy(), item["label"].numpy(), self.config, rng)
        return {"image": torch.from_numpy(image), "label": torch.from_numpy(label), "case_id": item["case_id"]}


# ------------------------------------------------------------------------------------- measuring


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class Trainer:
    """One preset's network, optimiser and loss on the device; ``step(batch)`` is one training step."""

    def __init__(self, config: RunConfig, device: torch.device) -> None:
        torch.manual_seed(0)
        self.device = device
        self.memory_format = torch.channels_last_3d if device.type == "cpu" else torch.contiguous_format
        self.model = UNet3D(config.model).to(device).to(memory_format=self.memory_format)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.train.lr)
        self.dtype = autocast_dtype(device, enabled=config.train.amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)
        self.loss_fn = AdvancedComboLoss(config.loss)

    def step(self, batch: dict[str, Any]) -> None:
        """What training does with one batch: livseg's train_one_epoch over a one-batch loader."""
        train_one_epoch(self.model, [batch], self.loss_fn, self.optimizer, self.scaler, device=self.device,
                        amp_dtype=self.dtype, memory_format=self.memory_format, progress=False, desc="")


class Batches:
    """Endless batches of one path: a fresh loader per epoch, as training builds them."""

    def __init__(self, make: Any) -> None:
        self.make, self.epoch, self.iterator = make, 0, iter(())

    def next(self) -> dict[str, Any]:
        try:
            return next(self.iterator)
        except StopIteration:
            self.epoch += 1
            self.iterator = iter(self.make(self.epoch))
            return next(self.iterator)


def augmentation_alone(base: Dataset, config: RunConfig, device: torch.device,
                       batches: int) -> dict[str, tuple[float, float]]:
    """Median (wall, process CPU) seconds per batch of the augmentation alone: scipy on the CPU vs
    torch on ``device``."""
    tc = config.train
    scipy_view = ScipyView(base, tc.augment, tc.seed, 1)
    old, new, old_cpu, new_cpu = [], [], [], []
    for k in range(batches):
        indices = [(k * tc.batch_size + j) % len(base) for j in range(tc.batch_size)]  # type: ignore[arg-type]
        started, cpu_started = time.perf_counter(), time.process_time()
        for i in indices:
            scipy_view[i]
        old.append(time.perf_counter() - started)
        old_cpu.append(time.process_time() - cpu_started)
        image = torch.cat([base[i]["image"][None] for i in indices]).to(device)
        label = torch.cat([base[i]["label"][None] for i in indices]).to(device)
        params = {key: torch.stack([draw_params(tc.augment, np.random.default_rng([tc.seed, 1, i]))[key]
                                    for i in indices]) for key in draw_params(tc.augment, np.random.default_rng(0))}
        _sync(device)
        started, cpu_started = time.perf_counter(), time.process_time()
        augment_batch(image, label, params)
        _sync(device)
        new.append(time.perf_counter() - started)
        new_cpu.append(time.process_time() - cpu_started)
    return {"scipy": (statistics.median(old), statistics.median(old_cpu)),
            "torch": (statistics.median(new), statistics.median(new_cpu))}


def bench_preset(name: str, device: torch.device, steps: int, workers: int) -> list[dict[str, Any]]:
    config = get_preset(name)
    tc = dataclasses.replace(config.train, num_workers=workers)
    config = dataclasses.replace(config, train=tc)
    base = Cases(N_CASES, config.preprocess.target_shape)
    trainer = Trainer(config, device)
    pin = device.type == "cuda"
    first = base[0]
    bare_batch = {"image": torch.cat([first["image"][None]] * tc.batch_size).to(device),
                  "label": torch.cat([first["label"][None]] * tc.batch_size).to(device)}
    paths: dict[str, Any] = {
        "bare": lambda epoch: [bare_batch] * steps,
        "loop": lambda epoch: make_train_loader(base, tc, epoch=epoch, info=DistInfo(), pin_memory=pin),
    }
    if tc.augment.enabled:
        paths["loop, scipy aug (before)"] = lambda epoch: DataLoader(
            ScipyView(base, tc.augment, tc.seed, epoch), batch_size=tc.batch_size, shuffle=True,
            num_workers=workers, pin_memory=pin)
    batches = {path: Batches(make) for path, make in paths.items()}
    times: dict[str, list[float]] = {path: [] for path in paths}
    cpu_times: dict[str, list[float]] = {path: [] for path in paths}
    peaks: dict[str, float] = {path: math.nan for path in paths}
    for round_ in range(steps + 1):  # round 0 warms up: allocator, cuDNN autotuning, thread pools, workers
        for path, source in batches.items():  # alternated step by step: drift on a shared machine hits every path
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            _sync(device)
            started, cpu_started = time.perf_counter(), time.process_time()
            trainer.step(source.next())  # the loader's fetch (and any CPU augmentation) counts
            _sync(device)
            if round_:
                times[path].append(time.perf_counter() - started)
                cpu_times[path].append(time.process_time() - cpu_started)
                if device.type == "cuda":
                    peaks[path] = max(0.0 if math.isnan(peaks[path]) else peaks[path],
                                      torch.cuda.max_memory_allocated() / 2**20)
        if round_ % 5 == 0:
            print(f"  {name}: step {round_}/{steps}", file=sys.stderr)
    bare = statistics.median(times["bare"])
    rows = [{"preset": name, "path": path, "grid": "x".join(map(str, config.preprocess.target_shape)),
             "batch": tc.batch_size, "ms_per_step": 1000 * statistics.median(t), "x_bare": statistics.median(t) / bare,
             "cpu_ms_per_step": 1000 * statistics.median(cpu_times[path]),
             "cpu_x_bare": statistics.median(cpu_times[path]) / statistics.median(cpu_times["bare"]),
             "peak_mb": peaks[path], "workers": workers} for path, t in times.items()]
    if tc.augment.enabled:
        alone = augmentation_alone(base, config, device, batches=max(4, steps))
        cpu_bare = statistics.median(cpu_times["bare"])
        for way, (seconds, cpu_seconds) in alone.items():
            label = "augmentation alone, scipy (before)" if way == "scipy" else "augmentation alone, torch (now)"
            rows.append({"preset": name, "path": label, "grid": rows[0]["grid"], "batch": tc.batch_size,
                         "ms_per_step": 1000 * seconds, "x_bare": seconds / bare, "cpu_ms_per_step": 1000 * cpu_seconds,
                         "cpu_x_bare": cpu_seconds / cpu_bare, "peak_mb": math.nan, "workers": 0})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--presets", nargs="+", default=["demo", "default"])
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per path (default 10)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (train.num_workers; default 0)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads (default 0: every core, as training uses; 1 makes CPU time a measure of work "
                        "that other jobs on a shared machine barely disturb)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    threads = args.threads or cpu_count()
    torch.set_num_threads(threads)
    rows = [row for name in args.presets for row in bench_preset(name, device, args.steps, args.workers)]

    where = torch.cuda.get_device_name() if device.type == "cuda" else f"{cpu_count()} CPU cores, {threads} threads"
    print(f"\ndevice {device} ({where}), torch {torch.__version__}, median of {args.steps} steps per path, "
          f"{args.workers} workers\n")
    header = (f"{'preset':8} {'grid':10} {'batch':>5} {'path':36} {'ms/step':>9} {'x bare':>7} {'CPU ms':>9} "
              f"{'x bare':>7} {'peak MB':>8}")
    print(header)
    print("-" * len(header))
    for r in rows:
        peak = "" if math.isnan(r["peak_mb"]) else f"{r['peak_mb']:.0f}"
        print(f"{r['preset']:8} {r['grid']:10} {r['batch']:5d} {r['path']:36} {r['ms_per_step']:9.1f} "
              f"{r['x_bare']:7.2f} {r['cpu_ms_per_step']:9.1f} {r['cpu_x_bare']:7.2f} {peak:>8}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "bench_train_step.csv"
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
