"""Pseudonyms at the door: source person identifiers become ``person_id`` by keyed HMAC.

``person_id = HMAC-SHA256(key, "participant:" + source_id)``, hex, first 32 characters
(128 bits). The same key gives the same pseudonym in every source and every run, so sources
link; without the key nobody can recompute or reverse it. The key is read from
``$EXPLORER_PSEUDONYM_KEY`` or from the file named by ``$EXPLORER_PSEUDONYM_KEY_FILE``, and must
live outside the lake. Without a key, ingest refuses: inventing one silently would make the
next run's pseudonyms differ and split every person in two.

References
----------
Krawczyk H, Bellare M, Canetti R. HMAC: Keyed-Hashing for Message Authentication. RFC 2104, 1997.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from explorer.errors import ExplorerError

MIN_KEY_BYTES = 16


class PseudonymKeyError(ExplorerError):
    """No usable pseudonym key."""


class Pseudonymizer:
    """Turn source identifiers into stable pseudonyms.

    Examples
    --------
    >>> p = Pseudonymizer(b"0123456789abcdef0123456789abcdef")
    >>> p("1000001") == p("1000001") != p("1000002")
    True
    >>> len(p("1000001"))
    32
    """

    def __init__(self, key: bytes):
        if len(key) < MIN_KEY_BYTES:
            raise PseudonymKeyError(f"pseudonym key has {len(key)} bytes; use at least {MIN_KEY_BYTES} random bytes "
                                    "(e.g. `python -c \"import secrets; print(secrets.token_hex(32))\"`)")
        self.key = key
        self._cache: dict[str, str] = {}

    def __call__(self, source_id) -> str:
        text = str(source_id).strip()
        cached = self._cache.get(text)
        if cached is None:
            cached = hmac.new(self.key, ("participant:" + text).encode(), hashlib.sha256).hexdigest()[:32]
            self._cache[text] = cached
        return cached

    def many(self, values) -> list[str]:
        return [self(v) for v in values]

    @classmethod
    def from_environment(cls, lake_root: Path | None = None, key_file: str | os.PathLike | None = None) -> Pseudonymizer:
        """The key from ``key_file``, ``$EXPLORER_PSEUDONYM_KEY`` or ``$EXPLORER_PSEUDONYM_KEY_FILE``."""
        key_file = key_file or os.environ.get("EXPLORER_PSEUDONYM_KEY_FILE")
        if key_file:
            path = Path(key_file).expanduser().resolve()
            if lake_root is not None and Path(lake_root).resolve() in path.parents:
                raise PseudonymKeyError(f"pseudonym key file {path} is inside the lake {lake_root}: anyone who can "
                                        "read the lake could re-identify people. Keep it outside the lake.")
            if not path.is_file():
                raise PseudonymKeyError(f"pseudonym key file {path} does not exist")
            return cls(path.read_bytes().strip())
        if os.environ.get("EXPLORER_PSEUDONYM_KEY"):
            return cls(os.environ["EXPLORER_PSEUDONYM_KEY"].encode())
        raise PseudonymKeyError(
            "no pseudonym key: set EXPLORER_PSEUDONYM_KEY, or EXPLORER_PSEUDONYM_KEY_FILE (or --key-file) to a file "
            "outside the lake holding at least 16 random bytes. Keep the same key for every ingest: a new key "
            "gives everyone new pseudonyms. Create one with `python -c \"import secrets; print(secrets.token_hex(32))\"`.")
