"""Files: the one place that knows file formats and how to write safely.

``volume`` is the contract every caller uses (:class:`Volume`, ``load_volume``, ``load_labels``,
``save_mask``, grid checks); ``nifti`` reads and writes NIfTI with nibabel; ``dicom`` reads DICOM
series and other SimpleITK formats and holds the only LPS -> RAS conversion; ``dicom_seg`` writes
label maps as DICOM SEG on their source series and reads SEG files onto CT grids; ``files`` writes
every output atomically (temporary file, then rename) and reads/writes JSON.
"""
