"""What the ledger tests share: a key, a channel, and keys to register."""

from __future__ import annotations

KEY = b"test-ledger-key-0123456789abcdef"
CHANNEL = "newsletter"


def keys_(n: int, prefix: str = "k") -> list[str]:
    return [f"{prefix}{i:06d}" for i in range(n)]
