"""`python -m tritonalex.perf`: what `tritonalex kernels` runs (with TRITON_INTERPRET=0)."""

import sys

from .command import main

sys.exit(main())
