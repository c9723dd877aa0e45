"""Local stand-ins for provider APIs, for tests and benchmarks; they listen on 127.0.0.1 only."""
