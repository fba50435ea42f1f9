"""Login throttling: GCRA buckets per (username, client IP) and per client IP."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from nexus.http.rate_limit import MemoryRateLimitStore, RateLimitStore

logger = logging.getLogger("nexus.plugins.auth")


class LoginThrottle:
    """Count login attempts; `hit` answers how long to wait, or None to go ahead.

    The store is shared by every instance behind a load balancer when it is a shared server
    (say Redis); the default keeps buckets in this process.
    """

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        ip_rate: float,
        ip_burst: int,
        store: RateLimitStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rate, self.burst, self.ip_rate, self.ip_burst = rate, burst, ip_rate, ip_burst
        self.store: RateLimitStore = store if store is not None else MemoryRateLimitStore()
        self.clock = clock

    async def hit(self, username: str, client_ip: str | None) -> int | None:
        """Count one attempt; return seconds to wait when it is refused, None when allowed.

        A failing store lets the attempt through (and logs it): losing the limiter must not
        lock everybody out.
        """
        ip = client_ip or "unknown"
        now = self.clock()
        try:
            decision = await self.store.hit(
                f"auth:login:ip:{ip}", rate=self.ip_rate, burst=self.ip_burst, now=now
            )
            if decision.is_allowed:
                decision = await self.store.hit(
                    f"auth:login:user:{username.casefold()}|{ip}",
                    rate=self.rate,
                    burst=self.burst,
                    now=now,
                )
        except Exception:  # a store may fail in any way: fail open
            logger.warning("Login throttle store failed; allowing the attempt", exc_info=True)
            return None
        if decision.is_allowed:
            return None
        return max(1, math.ceil(decision.retry_after))
