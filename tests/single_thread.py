"""As the command line does (prelabel/cli.py): no native thread pools, so the test process has one OS thread and
the readers may fork their workers (prelabel.workers.may_fork). Imported by conftest.py before numpy and
pyarrow are."""

import os

for _var, _value in (("OPENBLAS_NUM_THREADS", "1"), ("OMP_NUM_THREADS", "1"), ("MKL_NUM_THREADS", "1"),
                     ("JE_ARROW_MALLOC_CONF", "background_thread:false")):
    os.environ.setdefault(_var, _value)
