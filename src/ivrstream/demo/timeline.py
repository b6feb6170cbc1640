"""When the demo injects each fault: a pure schedule scaled to the run's duration.

Rules this module keeps:

- Every step sits at a fixed share of the duration, so a 5-second run and a 30-second run go
  through the same story in the same order; things that last (the frame burst, the receiver
  outage) last a share of the duration too, never less than :data:`MIN_SPELL` seconds.
- The faults never overlap: each one's effect can be seen on its own in the dashboard.
- The last step stops the traffic at ``duration``; what follows (draining, the summary) is not
  part of the timeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Action = Literal[
    "drop",
    "burst",
    "burst_end",
    "malformed",
    "revoke_tokens",
    "outage",
    "outage_end",
    "stop_traffic",
]

MIN_SPELL = 0.3  # seconds: the shortest burst or outage worth showing
# shares of event frames the emulator mangles during the burst
BURST_FAULTS = {"reorder": 0.2, "duplicate": 0.2, "skip": 0.03}
QUIET_FAULTS = dict.fromkeys(BURST_FAULTS, 0.0)


@dataclass(frozen=True)
class Step:
    """``action`` at ``at`` seconds after the start; ``spell`` is how long it lasts (if it does)."""

    at: float
    action: Action
    label: str
    spell: float = 0.0


def timeline(duration: float) -> list[Step]:
    """The steps of a ``duration``-second demo, in time order (a very short run is stretched
    rather than letting its faults overlap)."""
    if not duration > 0:
        raise ValueError("the duration must be positive")
    plan: list[tuple[float, Action, str, float]] = [
        (0.10, "drop", "disconnect", 0.0),
        (0.22, "burst", "frame burst", 0.08),
        (0.42, "malformed", "malformed frames", 0.0),
        (0.55, "revoke_tokens", "token expiry", 0.0),
        (0.68, "outage", "receiver outage", 0.12),
    ]
    ends: dict[Action, tuple[Action, str]] = {
        "burst": ("burst_end", "frames clean again"),
        "outage": ("outage_end", "receiver back"),
    }
    steps: list[Step] = []
    free_at = 0.0  # when the previous fault is over
    for fraction, action, label, lasting in plan:
        at = round(max(duration * fraction, free_at), 3)
        spell = round(max(MIN_SPELL, duration * lasting), 3) if lasting else 0.0
        steps.append(Step(at, action, label, spell))
        free_at = at + spell
        if action in ends:
            end_action, end_label = ends[action]
            steps.append(Step(round(free_at, 3), end_action, end_label))
    steps.append(Step(round(max(duration, free_at), 3), "stop_traffic", "traffic stopped"))
    return steps
