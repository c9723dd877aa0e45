"""Tests of tasks/ledger/: states, claims, the key, runs, migration and repairs."""
