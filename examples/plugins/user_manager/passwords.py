"""Password hashing with the standard library's scrypt, off the event loop.

The example keeps to the standard library. For accounts that log in, the auth plugin's users
(argon2id, login throttling, tokens) are the better home.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from typing import Final

# 16 MiB and some 50 ms of CPU per hash. OWASP suggests N=2**17 (pass maxmem=2**28 then)
# where servers can spare 128 MiB for each registration in flight.
_N: Final = 2**14
_R: Final = 8
_P: Final = 1


async def hash_password(password: str) -> str:
    """A salted scrypt hash of `password`: `scrypt$N$r$p$salt$hash` (salt and hash base64)."""
    salt = os.urandom(16)
    # scrypt takes tens of milliseconds of CPU: in a thread, other requests keep flowing.
    digest = await asyncio.to_thread(
        hashlib.scrypt, password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32
    )
    encoded = (base64.b64encode(part).decode() for part in (salt, digest))
    return f"scrypt${_N}${_R}${_P}${'$'.join(encoded)}"
