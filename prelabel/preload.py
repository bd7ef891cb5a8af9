"""What the forkserver imports once, before it forks the engine's workers (:func:`prelabel.workers.process_pool`
names this module in ``set_forkserver_preload``; nothing imports it otherwise). It stands at the top of the package, whose ``__init__`` imports nothing, so that
its first lines run before numpy or pandas is imported.

Without it each worker would import prelabel, numpy and pandas itself when it starts (about 0.8 s of CPU a
worker, and its own copy of every module's memory); forked from a forkserver that has them, a worker starts
in milliseconds and shares those pages. A process with more than one thread is never forked, so the threads
that importing numpy and pandas would start are turned off here, in the forkserver only (its workers inherit
it; each is one core's work anyway): the native math libraries' pools (one thread each) and the background
thread of pyarrow's jemalloc, which pandas imports when it is installed.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ.setdefault("JE_ARROW_MALLOC_CONF", "background_thread:false")

from . import adapters  # noqa: E402  (after the thread limits, which numpy reads when it is imported)
from .engine import run  # noqa: E402, F401

for _name in adapters.FORMATS:
    adapters.get(_name)
