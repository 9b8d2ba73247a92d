"""Writing network files atomically: what every chapter's ``save`` shares."""
import contextlib
import os
import tempfile


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(filename, mode="w"):
    """Open a temporary file next to ``filename`` for writing; on success rename it
    over ``filename``.

    The data is flushed and fsynced before ``os.replace``, so a failure (an
    exception in the caller's block, a full disk, a crash) leaves the previous
    file as it was and no temporary file behind. ``mode`` is "w" or "wb".
    """
    if mode not in ("w", "wb"):
        raise ValueError("mode must be 'w' or 'wb', got %r" % (mode,))
    path = os.fsdecode(os.fspath(filename))
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file 0600; give it the mode open() would have.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
