"""Training a network: :func:`livseg.training.train.train` is the entry point (a dataset or cache
in, a run folder out). ``run_folder`` checks and writes that folder (checkpoints, metrics.csv,
curves); ``loops`` moves batches through the network (one training epoch, one validation pass);
``distributed`` wraps DistributedDataParallel so one process and many share one code path;
``runstate`` holds what exact resumption needs (RNG states, seeds, threads, determinism,
precision). Inference never imports this package.
"""
