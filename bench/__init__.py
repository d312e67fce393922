"""Benchmarks (scripts printing tables): ``python -m bench.run_all [--quick]``; see RESULTS.md."""

import os

# progress bars would drown the tables; tqdm reads TQDM_* defaults when it is first imported
os.environ.setdefault("TQDM_DISABLE", "1")
