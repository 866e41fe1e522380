"""Data-quality gates: Great Expectations suites over the warehouse (quality/suites.py, run.py)."""
