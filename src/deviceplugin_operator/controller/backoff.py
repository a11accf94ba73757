"""Growing, jittered delays for retrying a failing connection (the informer's list and watch).

Jitter keeps many informers that lost the API server at the same moment from coming back at the
same moment; the cap keeps a long outage from turning into minutes of blindness once the
server is back.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Delays that double from ``initial`` up to ``cap``, each drawn from [d/2, d]."""

    def __init__(
        self,
        initial: float = 0.8,
        cap: float = 30.0,
        factor: float = 2.0,
        *,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if initial <= 0 or cap < initial or factor < 1:
            raise ValueError("Backoff needs 0 < initial <= cap and factor >= 1")
        self.initial = initial
        self.cap = cap
        self.factor = factor
        self._uniform = uniform
        self.attempts = 0
        """Delays handed out since the last ``reset``."""
        # Doublings after which the cap is reached; bounds the exponent so it cannot overflow.
        self._steps = 0
        while initial * factor**self._steps < cap and factor > 1:
            self._steps += 1

    def next(self) -> float:
        """The delay before the next attempt."""
        ceiling = min(self.cap, self.initial * self.factor ** min(self.attempts, self._steps))
        self.attempts += 1
        return self._uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """Start again from ``initial`` (after a success)."""
        self.attempts = 0
