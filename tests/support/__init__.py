"""Helpers shared by the tests: browser-based accessibility checks and screenshots."""
