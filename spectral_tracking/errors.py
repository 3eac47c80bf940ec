"""Every exception the package raises on purpose, in one place, and which of them are the user's to fix.

`USER_ERRORS` are the errors whose message says what to change (a setting, a file, a folder): the
entry points (``train.py``, ``fit.py``, the console scripts) print them as one line and exit with
status 2, without a stack trace. The rest report an interrupted run or a missing optional part.
"""


# --- the user's to fix: one line, exit status 2 ----------------------------------------------------
class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and what is expected."""


class DataError(Exception):
    """Data that cannot be used as given; the message names the file and what was expected."""


class SequenceFormatError(DataError, ValueError):
    """A sequence (or a file in it) does not have the expected layout or content."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A dataset's folder or file is absent; the message names the expected path and layout."""


class FitInputError(DataError, ValueError):
    """The images or settings given to the fit cannot work; the message says what and where
    (problems the data layer finds while reading are re-raised as this, with the same message)."""


class PLYFormatError(ValueError):
    """A PLY file that is not a usable 3DGS asset; the message names the file and the problem."""


class CorruptCheckpointError(RuntimeError):
    """No loadable checkpoint where one was expected; the message names the file and what to do."""


class RunRefused(ConfigError):
    """The folder holds another run (different settings): nothing is written into it."""


class RunFolderBusy(ConfigError):
    """Another live process holds the run folder's lock."""


USER_ERRORS = (ConfigError, DataError, PLYFormatError, CorruptCheckpointError, FileNotFoundError)


def write_failure(error: BaseException) -> str | None:
    """One line for a failure to write a file the run or fit produces (a read-only or full disk, a
    folder without permission), or None for any other error, which keeps its traceback. (torch.save
    reports a full disk as a RuntimeError from its zip writer; `spectral_tracking.run.atomic` turns it
    into the OSError it stands for, with the checkpoint's path.)"""
    import errno
    import os

    codes = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOTDIR, errno.EEXIST)
    if isinstance(error, OSError) and error.errno in codes and (error.errno not in (errno.EIO, errno.EEXIST) or error.filename):
        what = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded", errno.EIO: "the write failed",
                errno.EROFS: "the file system is read-only", errno.ENOTDIR: "a file stands where a folder should be",
                errno.EEXIST: "a file stands where a folder should be"}.get(error.errno, "permission denied")
        where = error.filename or "a file"
        todo = ("free some space (or write elsewhere: out_dir= / out=) and rerun: a run resumes from its last checkpoint"
                if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO) else
                "move that file away, or choose another folder (out_dir= for train.py, out= for fit.py)"
                if error.errno in (errno.ENOTDIR, errno.EEXIST) else
                "make the folder writable or choose another one (out_dir= for train.py, out= for fit.py)")
        return f"cannot write {os.fspath(where)}: {what}; {todo}"
    return None


# --- not the user's settings ------------------------------------------------------------------------
class RunInterrupted(Exception):
    """The run stopped on a signal after saving a checkpoint; ``exit_code`` is 128 + the signal."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class LPIPSWeightsMissing(FileNotFoundError):
    """The converted LPIPS weight file is not in the cache."""


class NativeBuildError(RuntimeError):
    """A C++ kernel could not be built or loaded (no compiler, a compile error, a load error)."""


class ViewerUnavailable(RuntimeError):
    """viser is not installed."""
