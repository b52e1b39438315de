"""``python -m memsr_bench`` is the ``memsr-bench`` command."""

import sys

from memsr_bench.cli import main

sys.exit(main())
