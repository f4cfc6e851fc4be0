"""Atomic file writes: a crash leaves the old file or the new one, never a mix."""
import os
import tempfile


def write_atomically(path, chunks):
    """Write the byte strings ``chunks`` to ``path`` atomically.

    A temporary file ``.invgc-*.tmp`` in the target folder is written, flushed and fsync'ed,
    renamed over ``path``, and the folder is fsync'ed. A process killed midway may leave the
    temporary file behind; ``path`` itself is always whole.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".invgc-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
