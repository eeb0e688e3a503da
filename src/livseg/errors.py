"""Exception types for bad input.

Every error a user can cause derives from :class:`LivsegError`; the CLI turns any of them into a
single line on stderr and exit status 2. Each message says what was received and what was
expected, so the line alone is enough to fix the input.
"""

from __future__ import annotations


def one_line(exc: BaseException) -> str:
    """An exception's message folded onto one line (the CLI prints exactly one line)."""
    return " ".join(str(exc).split()) or type(exc).__name__


class LivsegError(Exception):
    """Base class of all user-facing livseg errors."""


class InputFileNotFoundError(LivsegError, FileNotFoundError):
    """A path given as input does not exist."""


class UnreadableInputError(LivsegError, OSError):
    """A path given as input exists but cannot be opened: permission denied, a symbolic-link loop."""


class CorruptFileError(LivsegError, ValueError):
    """A file exists but cannot be read as what it claims to be (truncated, wrong format)."""


class DimensionError(LivsegError, ValueError):
    """An image is not a 3D volume (2D slice, 4D series, ...)."""


class EmptyDicomFolderError(LivsegError, ValueError):
    """A folder was given as a DICOM series but holds no readable DICOM series."""


class GeometryError(LivsegError, ValueError):
    """An image without a usable voxel grid: a zero, implausible or non-finite voxel spacing, a
    sheared grid, a NIfTI header without orientation, or DICOM slices that are not one evenly spaced,
    untilted stack of equal slices (a missing or duplicate slice, two series mixed, gantry tilt,
    slices of different pixel spacing or size)."""


class ModalityError(LivsegError, ValueError):
    """An image that is not CT: a DICOM series (or one slice of it) whose Modality or SOP class is
    another (MR, PET, ...)."""


class VoxelTypeError(LivsegError, ValueError):
    """An image whose voxels are not single real numbers (complex values, RGB colours)."""


class GridMismatchError(LivsegError, ValueError):
    """A mask does not lie on the same voxel grid (shape and affine) as its CT."""


class LabelValueError(LivsegError, ValueError):
    """A label map holds values outside the allowed set (LiTS: {0, 1, 2})."""


class NonFiniteError(LivsegError, ValueError):
    """An image holds NaN or infinite voxels."""


class CheckpointError(LivsegError, ValueError):
    """A checkpoint file is missing pieces, truncated, or was not written by livseg."""


class OutputExistsError(LivsegError, FileExistsError):
    """An output file exists and overwriting was not asked for."""


class OutputPathError(LivsegError, OSError):
    """An output folder is a file, or lies where nothing can be written."""


class ConfigError(LivsegError, ValueError):
    """A configuration value or override is invalid."""


class DatasetError(LivsegError, ValueError):
    """A dataset folder or case list is unusable; the message lists every bad case at once."""


class PacsError(LivsegError):
    """A DICOM archive (PACS) refused a request, answered something that is not DICOMweb, or
    holds no series livseg can segment; the message names the archive (never its credentials)."""


class PacsUnavailableError(PacsError):
    """The archive could not be reached or did not answer in time (connection refused, timeout,
    HTTP 5xx): worth trying again later."""
