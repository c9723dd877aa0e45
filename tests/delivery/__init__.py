"""Tests of tasks/delivery/: the chunk worker, recipient keying, chunking and channel status."""
