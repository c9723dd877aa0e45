"""Tests of tasks/speed/: each trick gives what its plain path gives, and its switch turns it off."""
