"""Talking to an archive (PACS) over DICOMweb: segment studies and store the DICOM SEG beside them.

- :mod:`livseg.pacs.client`: find (QIDO-RS), retrieve (WADO-RS), store (STOW-RS); timeouts,
  credentials, one-line errors.
- :mod:`livseg.pacs.select`: which series of a study to segment (axial CT, thinnest complete).
- :mod:`livseg.pacs.node`: one series through retrieve -> segment -> SEG -> store.
- :mod:`livseg.pacs.send`: one-shot, a study or a series (``livseg pacs send``).
- :mod:`livseg.pacs.watch` and :mod:`livseg.pacs.state`: the polling loop and its SQLite state
  file (``livseg pacs watch``).
- :mod:`livseg.pacs.dimse`: a DICOM node for archives without DICOMweb, C-STORE in and out
  (``livseg pacs listen``; pynetdicom).

Needs the ``pacs`` extra (``pip install 'livseg[pacs]'``: dicomweb-client, pynetdicom). Nothing
else in livseg imports this package.

Example::

    from livseg.pacs import PacsClient, Segmenter, read_credentials, send

    client = PacsClient("http://localhost:8042/dicom-web", credentials=read_credentials())
    result = send(client, Segmenter(), study_uid="1.2.3...")
    print(result.chosen.series.label(), result.processed.seg_uid)
"""

from livseg.pacs.client import Credentials, PacsClient, SeriesInfo, read_credentials
from livseg.pacs.node import Processed, Segmenter, process_series
from livseg.pacs.select import SeriesCheck, check_series, choose_series
from livseg.pacs.send import SendResult, send
from livseg.pacs.state import SeriesRecord, WatchState
from livseg.pacs.watch import WatchOptions, WatchSummary, study_date_range, watch

__all__ = [
    "Credentials", "PacsClient", "Processed", "Segmenter", "SendResult", "SeriesCheck", "SeriesInfo", "SeriesRecord",
    "WatchOptions", "WatchState", "WatchSummary", "check_series", "choose_series", "process_series",
    "read_credentials", "send", "study_date_range", "watch",
]
