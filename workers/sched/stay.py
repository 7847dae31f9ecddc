"""How much longer than the step model predicts a request really stays, learned from finished
requests and kept per prompt length.

The step model is corrected step by step, but a request's stay also depends on how many steps
its answer takes, and that varies from request to request: the quality profile gives the mean
over a task's answers. Requests with similar prompts tend to need similar numbers of steps (on
the demo task the prompt length sets the answer's: steps 14.3 / 16.9 / 18.6 / 20.7 for prompts of
28 / 32 / 36 / 40 characters at τ 0.9), so the correction is kept per prompt-length band
(geometric, `BAND_RATIO` wide) and starts, for a band not seen yet, from the all-requests one.
Where prompt length says nothing, every band learns the same value as the global one.
Pure: no torch, no Redis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

BAND_RATIO = 1.15  # prompt lengths within 15 % of each other share a band
MIN_SCALE, MAX_SCALE = 0.5, 2.0


@dataclass(slots=True)
class StayScale:
    """Log-space EWMAs of measured / predicted stay: one over all requests, one per band."""

    alpha: float = 0.03  # each completion's weight: ~1/alpha completions of memory
    overall: float = 1.0
    bands: dict[int, float] = field(default_factory=dict)

    def factor(self, prompt_len: int) -> float:
        return self.bands.get(_band(prompt_len), self.overall)

    def observe(self, prompt_len: int, unscaled_ms: float, measured_ms: float) -> None:
        """`unscaled_ms`: the stay the step model predicted at admission, before any factor."""
        if unscaled_ms <= 0 or measured_ms <= 0:
            return
        band = _band(prompt_len)
        self.bands[band] = self._learn(self.bands.get(band, self.overall), unscaled_ms, measured_ms)
        self.overall = self._learn(self.overall, unscaled_ms, measured_ms)

    def _learn(self, scale: float, unscaled_ms: float, measured_ms: float) -> float:
        step = self.alpha * math.log(measured_ms / (unscaled_ms * scale))
        return min(MAX_SCALE, max(MIN_SCALE, scale * math.exp(step)))


def _band(prompt_len: int) -> int:
    return int(math.log(max(prompt_len, 1)) / math.log(BAND_RATIO))
