"""``livseg pacs send|watch|list|status|listen``: segment studies of an archive and store the SEG there
(DICOMweb; ``listen``: a DICOM node receiving by C-STORE).

Exit status: 0 done; 1 ``watch --once`` left failed series (the state file says why); 2 bad
input (the usual one line); 3 the archive could not be reached (down, too slow, 5xx: try again
later); 130 stopped by a second Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

EXIT_FAILED_SERIES, EXIT_UNAVAILABLE = 1, 3
QUIET = ("dicomweb_client", "highdicom", "retrying", "pynetdicom")  # their INFO lines narrate every request and copied module


def add_pacs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pacs",
        help="segment CT studies of a PACS (DICOMweb) and store the DICOM SEG beside them",
        description="Find CT series on a DICOMweb archive (QIDO-RS), retrieve them (WADO-RS), segment them "
        "and store the DICOM SEG into the same study (STOW-RS): one study (`send`) or every new series "
        "(`watch`). Credentials: --user and --password-file, or $LIVSEG_PACS_USER and $LIVSEG_PACS_PASSWORD "
        "(a bearer token: --token-file or $LIVSEG_PACS_TOKEN); never in the URL. Exit status: 0 done, "
        "1 `watch --once` left failed series, 2 bad input, 3 archive unreachable.",
    )
    actions = p.add_subparsers(dest="pacs_command", metavar="ACTION", required=True)
    _add_send(actions)
    _add_watch(actions)
    _add_list(actions)
    _add_status(actions)
    _add_listen(actions)


def _add_archive(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", help="DICOMweb base URL, e.g. http://localhost:8042/dicom-web (Orthanc)")
    p.add_argument("--user", default=None, help="user name (default: $LIVSEG_PACS_USER)")
    p.add_argument("--password-file", type=Path, default=None, metavar="FILE",
                   help="file whose first line is the password (default: $LIVSEG_PACS_PASSWORD)")
    p.add_argument("--token-file", type=Path, default=None, metavar="FILE",
                   help="file whose first line is a bearer token (default: $LIVSEG_PACS_TOKEN)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S", help="seconds to wait for each read (default 60)")


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default=None, metavar="PT",
                   help="livseg checkpoint, or builtin:NAME (default: the built-in model)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: auto")
    p.add_argument("--threshold", type=float, default=0.5, help="probability threshold (default 0.5)")
    p.add_argument("--threads", type=int, default=0, metavar="N", help="CPU threads for the network (default 0: all)")


def _add_node(p: argparse.ArgumentParser, *, settle_s: float) -> None:
    """What watch and listen share: settling, retries, kept outputs, the model."""
    p.add_argument("--settle", type=float, default=settle_s, metavar="S",
                   help=f"process a series once its image count has not changed for S seconds (default {settle_s:g})")
    p.add_argument("--max-attempts", type=int, default=3, metavar="N",
                   help="tries of a series that fails because of the archive (default 3)")
    p.add_argument("--backoff", type=float, default=60.0, metavar="S",
                   help="wait before the first retry, doubled after each failure, at most an hour (default 60)")
    p.add_argument("-o", "--out", type=Path, default=None, help="also keep each series' mask, SEG and stats here")
    _add_model(p)


def _add_send(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser(
        "send", help="segment one study (or series) and store its SEG in the study",
        description="Segment the CT of one study: the axial CT series with the thinnest complete stack, or "
        "--series. Stores the DICOM SEG (what `predict --output-type dicom-seg` writes) into the same study; "
        "-o also keeps <SeriesUID>_liver.nii.gz, _seg.dcm and _stats.json.")
    _add_archive(p)
    p.add_argument("--study", default=None, metavar="UID", help="Study Instance UID")
    p.add_argument("--series", default=None, metavar="UID", help="Series Instance UID (its study is looked up when "
                   "--study is not given)")
    p.add_argument("-o", "--out", type=Path, default=None, help="also keep the local outputs in this folder")
    p.add_argument("--overwrite", action="store_true", help="replace existing local outputs")
    _add_model(p)
    p.set_defaults(func=_run_send)


def _add_watch(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser(
        "watch", help="poll for new CT series, segment each once, store the SEGs",
        description="Poll the archive for CT series and segment each exactly once; --state records every "
        "series seen (done with the SEG's UID, failed with the reason, skipped and why), so a restart sends "
        "nothing twice. SIGTERM / Ctrl-C finish the current series; a second one stops at once.")
    _add_archive(p)
    p.add_argument("--state", type=Path, required=True, metavar="FILE", help="SQLite state file (created when missing)")
    p.add_argument("--once", action="store_true", help="one poll and every series due, then exit (for cron)")
    p.add_argument("--study-date", default="2d", metavar="RANGE",
                   help="studies to watch: Nd (the last N days; default 2d: today and yesterday), all, YYYYMMDD, "
                   "YYYYMMDD-, YYYYMMDD-YYYYMMDD")
    p.add_argument("--modality", default="CT", help="modality to poll for (default CT)")
    p.add_argument("--description", default=None, metavar="REGEX",
                   help="segment only series whose description contains a match (case-insensitive)")
    p.add_argument("--interval", type=float, default=60.0, metavar="S", help="seconds between polls (default 60)")
    _add_node(p, settle_s=60.0)
    p.set_defaults(func=_run_watch)


def _add_list(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser("list", help="list the archive's series (UIDs, images, descriptions)",
                           description="List the series of the archive that match, one line each.")
    _add_archive(p)
    p.add_argument("--study", default=None, metavar="UID", help="only this study's series (every modality)")
    p.add_argument("--study-date", default="2d", metavar="RANGE", help="as for watch (default 2d); all for every date")
    p.add_argument("--modality", default="CT", help="default CT; 'all' for every modality")
    p.set_defaults(func=_run_list)


def _add_status(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser("status", help="what a watch loop's state file holds",
                           description="Every series the watch loop has seen: status, attempts, the reason of a "
                           "failure or skip, the SEG's UID. Safe beside a running loop.")
    p.add_argument("--state", type=Path, required=True, metavar="FILE", help="the watch loop's state file")
    p.set_defaults(func=_run_status)


def _add_listen(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser(
        "listen", help="a DICOM node: receive CT by C-STORE, send each SEG back by C-STORE",
        description="For archives without DICOMweb: listen as a Storage SCP for CT images, segment each series "
        "once no image of it has arrived for --settle seconds, and C-STORE its SEG to --send-to. The state file "
        "is the same as watch's (`livseg pacs status`). SIGTERM / Ctrl-C finish the current series.")
    p.add_argument("--send-to", required=True, metavar="AET@HOST:PORT", help="where SEGs go, e.g. ORTHANC@pacs:4242")
    p.add_argument("--ae-title", default="LIVSEG", help="this node's AE title (default LIVSEG)")
    p.add_argument("--port", type=int, default=11112, help="port to listen on (default 11112)")
    p.add_argument("--address", default="0.0.0.0", help="interface to listen on (default all)")
    p.add_argument("--spool", type=Path, required=True, metavar="DIR", help="where received images wait")
    p.add_argument("--state", type=Path, required=True, metavar="FILE", help="SQLite state file (created when missing)")
    _add_node(p, settle_s=10.0)
    p.set_defaults(func=_run_listen)


# ------------------------------------------------------------------------------------ running


def _quiet(args: argparse.Namespace, *, timestamps: bool = False) -> None:
    """Third-party narration off (unless -v); a long-running service logs each line with its time."""
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.DEBUG if args.verbose else logging.ERROR)
    if timestamps:
        for handler in logging.getLogger().handlers:
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))


def _client(args: argparse.Namespace):  # noqa: ANN202 (livseg.pacs.PacsClient, imported lazily)
    _quiet(args)
    from livseg.pacs.client import PacsClient, read_credentials

    credentials = read_credentials(username=args.user, password_file=args.password_file, token_file=args.token_file)
    return PacsClient(args.url, credentials=credentials, timeout_s=args.timeout)


def _segmenter(args: argparse.Namespace):  # noqa: ANN202
    from livseg.errors import ConfigError
    from livseg.pacs.node import Segmenter

    if not 0 <= args.threads <= 1024:
        raise ConfigError(f"--threads must lie in 0..1024, got {args.threads}")
    return Segmenter(args.checkpoint, device=args.device, threshold=args.threshold, num_threads=args.threads)


def _unavailable(args: argparse.Namespace, message: str) -> int:
    print(f"livseg pacs {args.pacs_command}: error: {message}", file=sys.stderr)
    return EXIT_UNAVAILABLE


def _run_send(args: argparse.Namespace) -> int:
    from livseg.errors import ConfigError, PacsUnavailableError, one_line
    from livseg.pacs.send import send

    if args.study is None and args.series is None:
        raise ConfigError("give --study UID or --series UID (`livseg pacs list URL` lists them)")
    client = _client(args)
    try:
        result = send(client, _segmenter(args), study_uid=args.study, series_uid=args.series, out_dir=args.out,
                      overwrite=args.overwrite)
    except PacsUnavailableError as exc:
        return _unavailable(args, one_line(exc))
    done = result.processed
    times = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in done.timings.items())
    kept = f"; kept in {args.out}" if args.out is not None else ""
    print(f"{done.series.label()}: liver {done.stats['liver_volume_ml']:.1f} mL -> SEG {done.seg_uid} stored in "
          f"study {done.series.study_uid} ({times}){kept}")
    return 0


def _run_watch(args: argparse.Namespace) -> int:
    from livseg.pacs.state import WatchState
    from livseg.pacs.watch import WatchOptions, study_date_range, watch

    _quiet(args, timestamps=True)
    options = WatchOptions(modality=args.modality, study_date=study_date_range(args.study_date),
                           description=args.description, interval_s=args.interval, settle_s=args.settle,
                           max_attempts=args.max_attempts, backoff_s=args.backoff, out_dir=args.out)
    client = _client(args)
    with WatchState(args.state) as state:
        segmenter = _segmenter(args)
        logging.getLogger("livseg").info("watching %s for %s series (study date %s); state %s", client.url,
                                         options.modality, options.study_date or "any", args.state)
        summary = watch(client, segmenter, state, options, once=args.once)
        counts = state.counts()
    logging.getLogger("livseg").info(
        "this run: %d done, %d failed, %d skipped; the state holds %s", len(summary.done), len(summary.failed),
        len(summary.skipped), ", ".join(f"{n} {status}" for status, n in counts.items() if n))
    if args.once and summary.last_poll_error:
        return _unavailable(args, summary.last_poll_error)
    return EXIT_FAILED_SERIES if args.once and summary.failed else 0


def _run_list(args: argparse.Namespace) -> int:
    from livseg.errors import PacsUnavailableError, one_line
    from livseg.pacs.watch import study_date_range

    client = _client(args)
    modality = None if args.modality.lower() == "all" or args.study else args.modality
    try:
        found = client.find_series(study_uid=args.study, modality=modality,
                                   study_date=None if args.study else study_date_range(args.study_date))
    except PacsUnavailableError as exc:
        return _unavailable(args, one_line(exc))
    for info in sorted(found, key=lambda s: (s.study_date, s.study_uid, s.number or 0)):
        print(f"{info.study_date or '-':8}  {info.modality or '-':4} study {info.study_uid}  series {info.series_uid}  "
              f"#{info.number if info.number is not None else '-'}  {info.instances or 0} images  "
              f"{info.description!r}")
    if not found:
        print("no series match", file=sys.stderr)
    return 0


def _run_status(args: argparse.Namespace) -> int:
    from livseg.pacs.state import WatchState

    with WatchState(args.state, read_only=True) as state:
        records, counts = state.records(), state.counts()
        last_poll = state.get_meta("last_poll")
    for record in records:
        detail = f"SEG {record.seg_uid}" if record.status == "done" else record.reason
        review = " [REVIEW]" if record.review else ""
        tries = f" ({record.attempts} failed tries)" if record.attempts else ""
        print(f"{record.status:8} {record.series.label()}{tries}: {detail}{review}")
    print(f"{len(records)} series: " + ", ".join(f"{n} {status}" for status, n in counts.items() if n)
          + f"; last poll {last_poll or 'never'}")
    return 0


def _run_listen(args: argparse.Namespace) -> int:
    import threading

    from livseg.pacs.dimse import DicomNode, Peer
    from livseg.pacs.state import WatchState
    from livseg.pacs.watch import StopOnSignal, WatchOptions

    _quiet(args, timestamps=True)
    destination = Peer.parse(args.send_to)
    options = WatchOptions(settle_s=args.settle, max_attempts=args.max_attempts, backoff_s=args.backoff, out_dir=args.out)
    stop = threading.Event()
    with WatchState(args.state) as state:
        node = DicomNode(_segmenter(args), state, spool=args.spool, destination=destination, ae_title=args.ae_title,
                         port=args.port, address=args.address, options=options)
        with StopOnSignal(stop).installed():
            node.serve(stop)
    return 0
