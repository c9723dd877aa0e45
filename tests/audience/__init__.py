"""Tests of tasks/audience/: reading, validating and selecting borrowers."""
