"""A DICOM node for archives without DICOMweb: CT arrives by C-STORE, the SEG goes back by C-STORE.

:class:`DicomNode` listens as a Storage SCP (pynetdicom) for CT Image Storage. Each received
instance is written to ``spool/<StudyUID>/<SeriesUID>/<SOPUID>.dcm`` (to a temporary name first,
then renamed) and reported to the node's loop. The loop owns the state file
(:class:`livseg.pacs.state.WatchState`, the same as ``watch``). A series is processed once no
image of it has arrived for ``settle_s``: its headers are checked as ``watch`` checks them, it
is segmented (:func:`livseg.pacs.node.segment_and_store`), and its SEG is sent by C-STORE to
the destination (:func:`c_store`). Its spool folder is then removed. A failed send is retried
with back-off, as in ``watch``. The spool survives a restart: series received but not yet done
are taken up again.

Unlike DICOMweb, DIMSE gives no cheap way to ask whether a SEG arrived, so a send cut off after
the archive stored the SEG but before its confirmation came back may store it a second time on
the retry.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from livseg.errors import ConfigError, LivsegError, PacsError, PacsUnavailableError, one_line
from livseg.pacs.client import SeriesInfo
from livseg.pacs.node import Segmenter, segment_and_store
from livseg.pacs.select import check_series
from livseg.pacs.state import SeriesRecord, WatchState
from livseg.pacs.watch import WatchOptions, record_failure

log = logging.getLogger(__name__)

__all__ = ["DicomNode", "Peer", "c_store"]

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_UID = re.compile(r"^[0-9.]{1,64}$")  # file and folder names come from UIDs: nothing else may reach the spool path


@dataclass(frozen=True)
class Peer:
    """A DICOM application entity: AE title, host, port."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Peer:
        """``AETITLE@host:port`` (e.g. ``ORTHANC@localhost:4242``).

        Raises:
            ConfigError: anything else.
        """
        match = re.fullmatch(r"([^@]{1,16})@([^:@]+):(\d{1,5})", text.strip())
        if match is None or not 0 < int(match[3]) < 65536:
            raise ConfigError(f"DICOM peer {text!r}: expected AETITLE@host:port, e.g. ORTHANC@localhost:4242")
        return cls(match[1], match[2], int(match[3]))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def c_store(path: str | os.PathLike[str], peer: Peer, *, calling_ae: str = "LIVSEG", timeout_s: float = 60.0) -> None:
    """Send one DICOM file to ``peer`` by C-STORE and check the status.

    Raises:
        PacsUnavailableError: no association (peer down, refused, timeout) or it broke off.
        PacsError: the peer answered with a failure status.
    """
    import pydicom
    from pynetdicom import AE

    ds = pydicom.dcmread(path)
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
    if not assoc.is_established:
        raise PacsUnavailableError(f"cannot send {Path(path).name} to {peer}: no DICOM association "
                                   "(peer down, AE title refused, or no answer)")
    try:
        status = assoc.send_c_store(ds)
    finally:
        assoc.release()
    code = int(getattr(status, "Status", -1)) if status else -1
    if code == -1:
        raise PacsUnavailableError(f"sending {Path(path).name} to {peer}: the association broke off without a status")
    if code != 0x0000 and not 0xB000 <= code <= 0xBFFF:  # Bxxx: stored with a warning
        raise PacsError(f"{peer} refused {Path(path).name}: C-STORE status 0x{code:04X}")


class DicomNode:
    """A Storage SCP that segments the CT series it receives and sends each SEG back.

    Args:
        segmenter: the loaded model.
        state: the open state file (one node or watch loop per file).
        spool: where received instances wait (created).
        destination: where SEGs go (usually the archive that sent the CT).
        ae_title: this node's AE title.
        port: the port to listen on; ``address`` the interface (default all).
        options: settling, retries and ``out_dir`` as for ``watch`` (polling filters unused).
    """

    def __init__(self, segmenter: Segmenter, state: WatchState, *, spool: str | os.PathLike[str], destination: Peer,
                 ae_title: str = "LIVSEG", port: int = 11112, address: str = "0.0.0.0",
                 options: WatchOptions = WatchOptions(settle_s=10.0)) -> None:
        self.segmenter, self.state, self.destination, self.options = segmenter, state, destination, options
        self.spool = Path(spool)
        self.spool.mkdir(parents=True, exist_ok=True)
        self.ae_title, self.port, self.address = ae_title, int(port), address
        self._arrivals: queue.Queue[SeriesInfo] = queue.Queue()

    def serve(self, stop: threading.Event, *, poll_s: float = 0.5) -> None:
        """Listen and process until ``stop`` is set (the current series is finished first)."""
        from pynetdicom import AE, evt

        for folder in sorted(p for p in self.spool.glob("*/*") if p.is_dir() and _UID.match(p.name)):  # before a restart
            self._note(folder)
        ae = AE(ae_title=self.ae_title)
        ae.add_supported_context(CT_IMAGE_STORAGE)
        try:
            server = ae.start_server((self.address, self.port), block=False,
                                     evt_handlers=[(evt.EVT_C_STORE, self._received)])
        except OSError as exc:
            raise ConfigError(f"cannot listen on {self.address}:{self.port}: {one_line(exc)}") from None
        log.info("DICOM node %s listening on port %d; SEGs go to %s", self.ae_title, self.port, self.destination)
        try:
            while not stop.is_set():
                self._drain()
                for record in self.state.due(time.time(), settle_s=self.options.settle_s,
                                             max_attempts=self.options.max_attempts):
                    if stop.is_set():
                        break
                    self._process(record)
                stop.wait(poll_s)
        finally:
            server.shutdown()

    # -------------------------------------------------------------------------------- receiving

    def _received(self, event) -> int:  # noqa: ANN001 (pynetdicom event)
        """C-STORE handler (runs in the association's thread): spool the instance, report it."""
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            study, series, sop = (str(ds.get(k, "")) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"))
            if not all(_UID.match(uid) for uid in (study, series, sop)):
                log.warning("refused an instance without valid Study/Series/SOP Instance UIDs")
                return 0xA900  # dataset does not match SOP class
            folder = self.spool / study / series
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{sop}.part"
            ds.save_as(tmp, enforce_file_format=True)
            os.replace(tmp, folder / f"{sop}.dcm")
        except Exception as exc:  # noqa: BLE001 (a bad instance must not take the node down)
            log.warning("could not spool an instance: %s", one_line(exc))
            return 0xA700  # out of resources
        number = ds.get("SeriesNumber")
        self._arrivals.put(SeriesInfo(study, series, modality=str(ds.get("Modality", "")),
                                      description=str(ds.get("SeriesDescription", "")).strip(),
                                      number=int(number) if number not in (None, "") else None,
                                      study_date=str(ds.get("StudyDate", "")), patient_id=str(ds.get("PatientID", ""))))
        return 0x0000

    def _drain(self) -> None:
        """Note every series that received images since the last look (with its current count)."""
        seen: dict[str, SeriesInfo] = {}
        while True:
            try:
                info = self._arrivals.get_nowait()
            except queue.Empty:
                break
            seen[info.series_uid] = info
        for info in seen.values():
            self._note(self.spool / info.study_uid / info.series_uid, info)

    def _note(self, folder: Path, info: SeriesInfo | None = None) -> None:
        files = list(folder.glob("*.dcm"))
        if info is None:
            if not files:
                return
            import pydicom

            first = pydicom.dcmread(files[0], stop_before_pixels=True)
            info = SeriesInfo(str(first.StudyInstanceUID), str(first.SeriesInstanceUID), modality=str(first.get("Modality", "")),
                              description=str(first.get("SeriesDescription", "")).strip())
        info = dataclasses.replace(info, instances=len(files))
        self.state.record_seen(info)
        record = self.state.get(info.series_uid)
        if record is not None and record.status in ("done", "skipped"):
            log.info("%s is already %s: %d late image(s) dropped", info.label(), record.status, len(files))
            shutil.rmtree(folder, ignore_errors=True)

    # -------------------------------------------------------------------------------- processing

    def _process(self, record: SeriesRecord) -> None:
        import pydicom

        series, uid = record.series, record.series.series_uid
        folder = self.spool / series.study_uid / uid
        self.state.mark_running(uid)
        try:
            headers = [pydicom.dcmread(f, stop_before_pixels=True).to_json_dict() for f in sorted(folder.glob("*.dcm"))]
            check = check_series(series, headers)
            if not check.usable:
                self.state.mark_skipped(uid, check.reason)
                log.info("skipped %s: %s", series.label(), check.reason)
                shutil.rmtree(folder, ignore_errors=True)
                return
            processed = segment_and_store(folder, series, self.segmenter, out_dir=self.options.out_dir, overwrite=True,
                                          store=lambda path: c_store(path, self.destination, calling_ae=self.ae_title),
                                          address=f"dicom://{self.ae_title}/{series.study_uid}/{uid}",
                                          before_store=lambda seg: self.state.set_seg_uid(uid, seg),
                                          work_dir=self.options.work_dir)
        except KeyboardInterrupt:
            self.state.mark_new(uid, "interrupted; will be processed again")
            raise
        except PacsError as exc:
            record_failure(self.state, self.options, record, one_line(exc), retry=True)
            return
        except LivsegError as exc:
            record_failure(self.state, self.options, record, one_line(exc), retry=False)
            return
        except Exception as exc:  # noqa: BLE001 (as in watch: recorded, the node keeps running)
            log.debug("unexpected error on %s", series.label(), exc_info=True)
            record_failure(self.state, self.options, record, f"internal error: {type(exc).__name__}: {one_line(exc)}",
                           retry=True)
            return
        self.state.mark_done(uid, seg_uid=processed.seg_uid, timings=processed.timings, stats=processed.stats)
        shutil.rmtree(folder, ignore_errors=True)
        times = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in processed.timings.items())
        log.info("done %s: liver %.0f mL; SEG %s sent to %s (%s)", series.label(),
                 processed.stats.get("liver_volume_ml", 0.0), processed.seg_uid, self.destination, times)
