"""Provider tests: the real client libraries against the local stand-ins of tests/servers/."""
