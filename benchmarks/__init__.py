"""STAT bot's performance benchmarks: each prints its figures beside their targets.

Run them with `python3 bootstrap.py bench` (all) or `python3 bootstrap.py bench
queue|latency|spawn` (one or more); `python3 bootstrap.py bench --help` lists the
options. The targets come from the "Performance figures to beat" table in the
design notes; results and how each figure is measured are in BENCHMARKS.md.

A missed target is reported as MISS, not as a failure: the exit status is
non-zero only when a benchmark could not run. These are not tests (pytest does
not collect them). Everything runs in a temporary folder that is removed
afterwards, every benchmark has a time limit, and every process a benchmark
starts is stopped before it returns.
"""
