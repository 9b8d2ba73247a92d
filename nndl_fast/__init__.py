"""nndl_fast — the code of *Neural Networks and Deep Learning*, compiled.

Change one import line (``import network`` → ``from nndl_fast import network``)
and the book's commands run on Python 3, with the same results, much faster.
"""
from ._version import __version__
from ._config import get_num_threads, pure_python, set_num_threads, show_config
from ._datacache import clear as clear_cache
from .scaleout import map_tasks, sweep, train_ensemble

__all__ = ["__version__", "clear_cache", "get_num_threads", "map_tasks", "pure_python",
           "set_num_threads", "show_config", "sweep", "train_ensemble"]
