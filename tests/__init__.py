"""fbsflow tests: mirror the code; providers against local servers; flows on one Prefect harness."""
