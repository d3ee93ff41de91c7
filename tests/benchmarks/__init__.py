"""Benchmarks of Scanflow against the baselines every user has (run with `make bench`).

Not part of `make test`: they print ratios measured in the same run and never assert on time.
"""
