"""Great Expectations suites as Dagster asset checks."""
