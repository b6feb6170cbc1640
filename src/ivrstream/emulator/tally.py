"""Running totals of what the traffic model is doing, for the console and ``/emulator/status``."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from ivrstream.emulator.traffic import Fact, Outcome


@dataclass
class FlowTally:
    active: int = 0
    started: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


class Tally:
    """A world listener: active calls and outcomes per flow, and the most recent facts."""

    def __init__(self, recent: int = 8) -> None:
        self.flows: dict[str, FlowTally] = {}
        self.facts = 0
        self.recent: deque[Fact] = deque(maxlen=recent)

    def on_fact(self, fact: Fact) -> None:
        self.facts += 1
        self.recent.append(fact)
        flow = self.flows.setdefault(fact.call.flow.name, FlowTally())
        if fact.kind == "customer.start":
            flow.active += 1
            flow.started += 1
        elif fact.kind == "customer.end":
            flow.active -= 1
            flow.outcomes[fact.call.outcome.value] += 1

    def snapshot(self) -> dict[str, Any]:
        ended = Counter[str]()
        for flow in self.flows.values():
            ended.update(flow.outcomes)
        total = sum(ended.values())
        return {
            "facts": self.facts,
            "flows": {
                name: {"active": f.active, "started": f.started, "outcomes": dict(f.outcomes)}
                for name, f in sorted(self.flows.items())
            },
            "ended": dict(ended),
            "containment": round(ended[Outcome.CONTAINED.value] / total, 3) if total else None,
        }
