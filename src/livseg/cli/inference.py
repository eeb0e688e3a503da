"""``livseg predict`` and ``livseg models``: using networks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from livseg.cli.common import add_device


def add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="segment the liver in CT volumes",
        description="Segment NIfTI files, DICOM series folders or folders of NIfTI files. Per case "
        "writes <case>_liver.nii.gz (the input's grid) and/or <case>_seg.dcm (DICOM SEG, --output-type), "
        "<case>_stats.json, with --preview <case>_preview.png and with --save-probabilities "
        "<case>_liver_probability.nii.gz; report.html for more than one case. Reading and writing overlap "
        "the network; under `torchrun --nproc_per_node=N -m livseg predict ...` the cases are shared among "
        "the ranks (one GPU each) and rank 0 writes one report.",
    )
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                   help="NIfTI file, DICOM series folder, or folder of NIfTI files")
    p.add_argument("--checkpoint", default=None, metavar="PT",
                   help="livseg checkpoint (best.pt), or builtin:NAME (default: the built-in model, see `livseg models`)")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    p.add_argument("--threshold", type=float, default=0.5, help="probability threshold (default 0.5)")
    add_device(p)
    p.add_argument("--no-postprocess", action="store_true",
                   help="keep every component and hole (default: largest component, holes filled)")
    p.add_argument("--output-type", default="nifti", choices=("nifti", "dicom-seg", "both"),
                   help="mask as NIfTI (default), as a DICOM SEG referencing the source series (DICOM input only), or both")
    p.add_argument("--save-probabilities", action="store_true",
                   help="also write the liver probability on the input grid (<case>_liver_probability.nii.gz)")
    p.add_argument("--organs", action="store_true",
                   help="with a multi-organ model (builtin:liver-v2): also write the liver and its neighbours as one "
                   "label map <case>_organs.nii.gz and <case>_organs.json (legend and volumes in mL)")
    p.add_argument("--series-id", default=None, metavar="UID",
                   help="SeriesInstanceUID to read from DICOM folders holding several series (default: the largest; "
                   "the log lists them)")
    p.add_argument("--preview", action="store_true", help="also write a three-plane PNG per case")
    p.add_argument("--no-quality", action="store_true",
                   help="skip the quality estimate (stats['quality']: predicted Dice and a review flag; it costs "
                   "one more forward pass on a crop around the liver)")
    overlap = p.add_mutually_exclusive_group()
    overlap.add_argument("--overlap", dest="overlap", action="store_true", default=None,
                         help="read the next CT and write the last case while the network runs (up to four CTs "
                              "in memory; default on a GPU or with one CPU thread per torchrun rank)")
    overlap.add_argument("--no-overlap", dest="overlap", action="store_false",
                         help="one case at a time, start to end (default when the network uses several CPU threads)")
    existing = p.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    existing.add_argument("--skip-existing", action="store_true",
                          help="go on where an interrupted batch stopped: cases whose outputs all exist are skipped")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    import os

    from livseg.inference.predict import predict

    results = predict(
        args.inputs,
        checkpoint=args.checkpoint,
        out_dir=args.out,
        threshold=args.threshold,
        postprocess=not args.no_postprocess,
        device=args.device,
        preview=args.preview,
        overwrite=args.overwrite,
        progress=not args.no_progress and sys.stderr.isatty(),  # no bar residue in logs or on error
        output_type=args.output_type,
        save_probabilities=args.save_probabilities,
        series_id=args.series_id,
        overlap=args.overlap,
        quality=not args.no_quality,
        skip_existing=args.skip_existing,
        organs=args.organs,
    )
    if os.environ.get("RANK", "0") != "0":  # under torchrun rank 0 reports every rank's cases
        return 0
    from livseg.inference.predict import review_first

    for stats in review_first(results):  # flagged cases first: the ones a person must open
        if stats.get("skipped"):
            print(f"{stats['case']}: skipped, its outputs exist in {args.out} (--skip-existing)")
            continue
        written = ", ".join(str(args.out / stats["outputs"][key]) for key in ("mask", "seg") if key in stats["outputs"])
        tumour = (f", {stats['tumour_count']} tumour(s) {stats['tumour_volume_ml']:.1f} mL "
                  f"(burden {stats['tumour_burden_percent']:.1f} %)" if "tumour_count" in stats else "")
        organs = ", ".join(f"{k} {v:.0f}" for k, v in stats.get("organs", {}).get("volume_ml", {}).items() if k != "liver")
        organs = f" (neighbours, mL: {organs})" if organs else ""
        quality = stats.get("quality")
        predicted = f", predicted Dice {quality['predicted_dice']:.3f}" if quality else ""
        print(f"{stats['case']}: liver {stats['liver_volume_ml']:.1f} mL{tumour}{organs}{predicted}, "
              f"{stats['seconds']:.1f} s -> {written}")
        if quality and quality["review"]:  # one line, still exit 0: the mask is written, a person should look
            print(f"WARNING {stats['case']}: review this mask: {'; '.join(quality['reasons'])}")
    return 0


def add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list the built-in models and print their model cards",
        description="Print the model card of every liver model shipped with livseg (architecture, input "
        "grid, training data and licences, measured accuracy, intended use and limits). `predict` and "
        "`evaluate` use the default one when no --checkpoint is given.",
    )
    p.add_argument("name", nargs="?", default=None, help="one model's card only (default: all)")
    p.set_defaults(func=_run_models)


def _run_models(args: argparse.Namespace) -> int:
    from livseg.weights import DEFAULT_MODEL, list_models, model_card

    names = [args.name] if args.name else list_models()
    if not names:
        print("no built-in models in this installation")
    for name in names:
        card = model_card(name)  # ConfigError for an unknown name: one line, exit 2
        default = " (default)" if name.removeprefix("builtin:") == DEFAULT_MODEL else ""
        print(f"== builtin:{name.removeprefix('builtin:')}{default} ==\n{card.rstrip()}\n")
    return 0
