"""The ground truth: a seeded model of IVR calls.

Rules this module keeps:

- Pure: no clock, no I/O. Times are integers (epoch milliseconds) computed from the arguments.
- Same seed, same calls: call ``i`` draws from its own random stream (``seed/call/i``), so what
  it contains never depends on how far anyone has read. Arrival times come from a separate
  stream, so ``--rate`` changes when calls come, not what they are.
- Every call is a plan made at arrival: the facts (``customer.start``, ``flow.start``,
  ``attributes``, ``flow.outcome``, ``flow.end``, ``acd.start``, ``acd.end``, ``customer.end``)
  and their times. Each surface of the emulator renders the same facts its own way.
"""

from __future__ import annotations

import hashlib
import heapq
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from ivrstream.protocol.topics import CALL_ORDER


def stable_uuid(*parts: object) -> str:
    """A UUID (version 4 layout) derived from ``parts``: the same parts give the same id."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


@dataclass(frozen=True)
class MenuOption:
    key: str
    name: str
    queue: str | None  # None: the option is served in the IVR itself


@dataclass(frozen=True)
class FlowSpec:
    name: str
    dnis: str
    weight: float
    version: str
    options: tuple[MenuOption, ...]

    @property
    def id(self) -> str:
        return stable_uuid("flow", self.name)


@dataclass(frozen=True)
class QueueSpec:
    name: str

    @property
    def id(self) -> str:
        return stable_uuid("queue", self.name)


QUEUES: tuple[QueueSpec, ...] = (
    QueueSpec("Billing"),
    QueueSpec("Technical Support"),
    QueueSpec("Sales"),
    QueueSpec("Claims"),
)

FLOWS: tuple[FlowSpec, ...] = (
    FlowSpec(
        "Main IVR",
        "tel:+15555550100",
        0.6,
        "12.0",
        (
            MenuOption("1", "billing", "Billing"),
            MenuOption("2", "support", "Technical Support"),
            MenuOption("3", "sales", "Sales"),
            MenuOption("4", "balance", None),
            MenuOption("5", "hours", None),
        ),
    ),
    FlowSpec(
        "Claims IVR",
        "tel:+15555550200",
        0.25,
        "4.0",
        (
            MenuOption("1", "new-claim", "Claims"),
            MenuOption("2", "claim-status", None),
            MenuOption("3", "payment", None),
        ),
    ),
    FlowSpec(
        "After Hours IVR",
        "tel:+15555550300",
        0.15,
        "2.0",
        (
            MenuOption("1", "voicemail", None),
            MenuOption("2", "emergency", "Technical Support"),
        ),
    ),
)

QUEUE_BY_NAME = {q.name: q for q in QUEUES}
DIVISION_ID = stable_uuid("division", "Home")
ORGANIZATION_ID = stable_uuid("organization", "emulated")


class Outcome(StrEnum):
    """How a call ends, from the IVR's point of view."""

    CONTAINED = "contained"  # served in the IVR, the flow ends the call
    ABANDONED_IN_IVR = "abandoned_in_ivr"  # caller hangs up in a menu
    ANSWERED = "answered"  # transferred to a queue, an agent answers
    ABANDONED_IN_QUEUE = "abandoned_in_queue"  # transferred, caller hangs up while waiting


FACT_KINDS = CALL_ORDER  # what a call can live through, in its order


@dataclass(frozen=True, eq=False)
class Fact:
    """One thing that happened to one call: the unit every surface renders."""

    call: Call
    kind: str
    time_ms: int
    step: int  # position within the call, so ties in time keep call order
    attributes: dict[str, str] = field(default_factory=dict)  # for kind == "attributes"

    @property
    def fact_id(self) -> str:
        return f"{self.call.conversation_id}/{self.step}/{self.kind}"

    @property
    def conversation_id(self) -> str:
        return self.call.conversation_id


@dataclass(frozen=True, eq=False)
class Call:
    """A whole call, planned at arrival."""

    index: int
    conversation_id: str
    ani: str
    flow: FlowSpec
    menu_path: tuple[str, ...]
    outcome: Outcome
    queue: QueueSpec | None
    customer_participant_id: str
    customer_session_id: str
    ivr_participant_id: str
    ivr_session_id: str
    acd_participant_id: str
    acd_session_id: str
    agent_participant_id: str
    agent_session_id: str
    agent_user_id: str
    flow_outcome_id: str
    facts: tuple[Fact, ...] = ()

    @property
    def start_ms(self) -> int:
        return self.facts[0].time_ms

    @property
    def end_ms(self) -> int:
        return self.facts[-1].time_ms

    def fact(self, kind: str) -> Fact | None:
        """The first fact of ``kind`` in this call, if the call has one."""
        return next((f for f in self.facts if f.kind == kind), None)

    def facts_until(self, time_ms: int) -> tuple[Fact, ...]:
        return tuple(f for f in self.facts if f.time_ms <= time_ms)

    def attributes_until(self, time_ms: int) -> dict[str, str]:
        merged: dict[str, str] = {}
        for f in self.facts:
            if f.kind == "attributes" and f.time_ms <= time_ms:
                merged.update(f.attributes)
        return merged


def luhn_complete(prefix: str) -> str:
    """Append the Luhn check digit to ``prefix``."""
    total = 0
    for i, ch in enumerate(reversed(prefix)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return prefix + str((10 - total % 10) % 10)


@dataclass(frozen=True)
class TrafficConfig:
    seed: int = 1
    rate: float = 2.0  # calls per second of clock time
    time_scale: float = 30.0  # nominal call durations are divided by this
    start_ms: int = 0  # clock time of the first possible arrival
    card_share: float = 0.02  # share of calls whose attributes carry a card number


class TrafficModel:
    """Calls in arrival order, and their facts in time order.

    Read it forwards with :meth:`facts_until`; it keeps only calls that still have future facts.
    """

    def __init__(self, config: TrafficConfig) -> None:
        if config.rate <= 0:
            raise ValueError("rate must be positive")
        if config.time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.config = config
        self._arrivals = random.Random(f"{config.seed}/arrivals")
        self._next_index = 0
        self._next_arrival_ms = float(config.start_ms) + self._gap_ms()
        self._pending: list[tuple[int, int, int, Fact]] = []  # (time, call, step, fact)
        self.calls_started = 0

    def _gap_ms(self) -> float:
        return self._arrivals.expovariate(self.config.rate) * 1000.0

    def _nominal(self, seconds: float) -> int:
        return round(seconds * 1000.0 / self.config.time_scale)

    def make_call(self, index: int, arrival_ms: int) -> Call:
        """Plan call ``index`` arriving at ``arrival_ms``: deterministic in (seed, index)."""
        rng = random.Random(f"{self.config.seed}/call/{index}")

        def uid() -> str:
            return str(uuid.UUID(int=rng.getrandbits(128), version=4))

        flow = rng.choices(FLOWS, weights=[f.weight for f in FLOWS])[0]
        option = rng.choice(flow.options)
        roll = rng.random()
        queue: QueueSpec | None = None
        if roll < 0.15:
            outcome = Outcome.ABANDONED_IN_IVR
        elif option.queue is None:
            outcome = Outcome.CONTAINED
        else:
            queue = QUEUE_BY_NAME[option.queue]
            outcome = Outcome.ANSWERED if rng.random() < 0.8 else Outcome.ABANDONED_IN_QUEUE
        call = Call(
            index=index,
            conversation_id=uid(),
            ani=f"tel:+1555{rng.randrange(10**7):07d}",
            flow=flow,
            menu_path=("main", option.name),
            outcome=outcome,
            queue=queue,
            customer_participant_id=uid(),
            customer_session_id=uid(),
            ivr_participant_id=uid(),
            ivr_session_id=uid(),
            acd_participant_id=uid(),
            acd_session_id=uid(),
            agent_participant_id=uid(),
            agent_session_id=uid(),
            agent_user_id=stable_uuid("agent", rng.randrange(25)),
            flow_outcome_id=stable_uuid("flowoutcome", flow.name, option.name),
        )
        facts: list[Fact] = []
        t = float(arrival_ms)

        def add(kind: str, attributes: dict[str, str] | None = None) -> None:
            facts.append(Fact(call, kind, round(t), len(facts), attributes or {}))

        add("customer.start")
        t += self._nominal(rng.uniform(0.2, 0.6))
        add("flow.start")
        t += self._nominal(rng.uniform(5, 12))  # greeting, language, first menu
        if outcome is Outcome.ABANDONED_IN_IVR and rng.random() < 0.4:
            pass  # hangs up before choosing anything
        else:
            attrs = {"MenuChoice": option.key, "MenuPath": ">".join(call.menu_path)}
            if rng.random() < self.config.card_share:
                attrs["PaymentCard"] = luhn_complete("4" + f"{rng.randrange(10**14):014d}")
            add("attributes", attrs)
            t += self._nominal(rng.uniform(6, 20))
            if outcome is Outcome.CONTAINED:
                t += self._nominal(rng.uniform(20, 90))  # self-service
                add("attributes", {"SelfServiceResult": "completed"})
                t += self._nominal(rng.uniform(1, 4))
        if outcome is not Outcome.ABANDONED_IN_IVR:
            add("flow.outcome")
        t += self._nominal(rng.uniform(0.1, 0.5))
        add("flow.end")
        if queue is not None:
            t += self._nominal(rng.uniform(0.05, 0.2))
            add("acd.start")
            t += self._nominal(rng.uniform(10, 120))  # waiting in queue
            add("acd.end")
            if outcome is Outcome.ANSWERED:
                t += self._nominal(rng.uniform(60, 300))  # talking to an agent
        t += self._nominal(rng.uniform(0.05, 0.3))
        add("customer.end")
        # the facts point back at the call, so they are attached after both exist
        object.__setattr__(call, "facts", tuple(facts))
        return call

    def facts_until(self, time_ms: int) -> Iterator[Fact]:
        """Every fact with ``time_ms`` at or before ``time_ms`` not yet returned, in time order."""
        while self._next_arrival_ms <= time_ms:
            call = self.make_call(self._next_index, round(self._next_arrival_ms))
            self._next_index += 1
            self.calls_started += 1
            for f in call.facts:
                heapq.heappush(self._pending, (f.time_ms, call.index, f.step, f))
            self._next_arrival_ms += self._gap_ms()
        while self._pending and self._pending[0][0] <= time_ms:
            yield heapq.heappop(self._pending)[3]

    def next_due_ms(self) -> float:
        """When the next fact (or arrival) is due: how long a driver may sleep."""
        pending = self._pending[0][0] if self._pending else float("inf")
        return min(pending, self._next_arrival_ms)

    @property
    def calls_in_progress(self) -> int:
        return len({entry[1] for entry in self._pending})
