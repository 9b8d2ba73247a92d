"""An opt-in progress bar over epochs (optional extra ``progress``: tqdm).

    >>> from nndl_fast.progress import epoch_progress
    >>> with epoch_progress(30):
    ...     net.SGD(training_data, 30, 10, 3.0, test_data=test_data)

The training call is not changed in any way (same shuffles, same numbers): the
bar follows the lines ``SGD`` prints. Every line still reaches stdout
unchanged, written above the bar (which goes to stderr); each line that
starts an epoch's report (``Epoch 3: ...``, ``Epoch 3 training complete``)
advances the bar by one. The bar is ``tqdm.auto``'s: a widget in a Jupyter
notebook (with ipywidgets installed), text on a terminal.
"""
import contextlib
import re
import sys

from ._validation import check_int

__all__ = ["epoch_progress"]

_EPOCH_LINE = re.compile(r"^Epoch \d+[ :]")


class _LineWatcher(object):
    """A stdout stand-in: passes whole lines through ``tqdm.write``, counting epochs."""

    def __init__(self, bar, stream, write):
        self._bar = bar
        self._stream = stream
        self._write = write
        self._pending = ""

    def write(self, text):
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._write(line, file=self._stream)
            if _EPOCH_LINE.match(line):
                self._bar.update(1)
        return len(text)

    def flush(self):
        self._stream.flush()

    def isatty(self):
        return False

    def close_pending(self):
        if self._pending:
            self._write(self._pending, file=self._stream)
            self._pending = ""


@contextlib.contextmanager
def epoch_progress(epochs, desc="epochs", file=None):
    """Show a tqdm bar of ``epochs`` epochs while the block runs.

    ``file`` is where the bar is drawn (default stderr); the training's own
    lines keep going to the stdout that was current on entry.
    """
    epochs = check_int(epochs, "epochs", 0)
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise ImportError("progress bars need tqdm: pip install tqdm "
                          "(or nndl_fast[progress])") from None
    stream = sys.stdout
    bar = tqdm(total=epochs, desc=desc, unit="epoch", file=file or sys.stderr,
               dynamic_ncols=True, leave=True)
    watcher = _LineWatcher(bar, stream, tqdm.write)
    try:
        with contextlib.redirect_stdout(watcher):
            yield bar
    finally:
        watcher.close_pending()
        bar.close()
