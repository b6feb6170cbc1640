"""How each Genesys surface shows one fact of the traffic model.

Pure functions of a :class:`~ivrstream.emulator.traffic.Fact` (or a call and a moment). Field names
and enum values follow ``shared/reference/genesys-schemas.md``; Event Streams snapshots follow
``shared/reference/event-streams.md``.
"""

from __future__ import annotations

from typing import Any

from ivrstream.emulator.traffic import (
    DIVISION_ID,
    Call,
    Fact,
    Outcome,
    stable_uuid,
)
from ivrstream.isotime import format_ms

Json = dict[str, Any]

# -- Event Streams -------------------------------------------------------------------------------

_STATE_AFTER = {
    "customer.start": "offering",
    "flow.start": "ivr",
    "attributes": "ivr",
    "flow.outcome": "ivr",
    "acd.start": "queued",
    "customer.end": "disconnected",
}


def es_event_type(fact: Fact) -> str:
    """The first fact of a call creates the interaction; every later one updates it."""
    return "interaction:created" if fact.kind == "customer.start" else "interaction:updated"


def interaction_snapshot(fact: Fact) -> Json:
    """The interaction as it stands right after ``fact``: the ``data`` of an Event Streams event."""
    call = fact.call
    state = _STATE_AFTER.get(fact.kind)
    if fact.kind == "flow.end":
        state = "transferring" if call.queue is not None else "ivr"
    elif fact.kind == "acd.end":
        state = "connected" if call.outcome is Outcome.ANSWERED else "abandoned"
    data: Json = {
        "id": call.conversation_id,
        "conversationId": call.conversation_id,
        "change": fact.kind,
        "state": state,
        "routing": {"type": "IVR"},
        "direction": "inbound",
        "mediaType": "voice",
        "ani": call.ani,
        "dnis": call.flow.dnis,
        "startTime": format_ms(call.start_ms),
        "divisionId": DIVISION_ID,
    }
    seen = {f.kind for f in call.facts[: fact.step + 1]}
    if "flow.start" in seen:
        data["flow"] = {
            "id": call.flow.id,
            "name": call.flow.name,
            "type": "INBOUNDCALL",
            "version": call.flow.version,
        }
    if "attributes" in seen:
        data["menuPath"] = list(call.menu_path)
        data["attributes"] = _attributes_through(call, fact)
    else:
        data["menuPath"] = ["main"] if "flow.start" in seen else []
    outcome: Json = {}
    if "flow.outcome" in seen:
        outcome["flowOutcomeValue"] = "SUCCESS"
    if "flow.end" in seen:
        outcome.update(_flow_exit(call))
    if "acd.start" in seen and call.queue is not None:
        data["queue"] = {"id": call.queue.id, "name": call.queue.name}
    if "acd.end" in seen:
        outcome["acdOutcome"] = "ANSWERED" if call.outcome is Outcome.ANSWERED else "ABANDON"
        if call.outcome is Outcome.ANSWERED:
            data["agent"] = {"userId": call.agent_user_id}
    if "customer.end" in seen:
        outcome["disconnectType"] = _customer_disconnect(call)
        data["endTime"] = format_ms(call.end_ms)
    if outcome:
        data["outcome"] = outcome
    return data


def _attributes_through(call: Call, fact: Fact) -> dict[str, str]:
    merged: dict[str, str] = {}
    for f in call.facts:
        if f.step > fact.step:
            break
        if f.kind == "attributes":
            merged.update(f.attributes)
    return merged


def _flow_exit(call: Call) -> Json:
    if call.queue is not None:
        return {"exitReason": "TRANSFER", "transferType": "ACD"}
    if call.outcome is Outcome.CONTAINED:
        return {"exitReason": "FLOW_DISCONNECT"}
    return {"exitReason": "DISCONNECT"}


def _customer_disconnect(call: Call) -> str:
    return "PEER" if call.outcome is Outcome.CONTAINED else "ENDPOINT"


# -- Notifications: detail events ----------------------------------------------------------------


def detail_topic(fact: Fact) -> str:
    return f"v2.detail.events.conversation.{fact.conversation_id}.{fact.kind}"


def _participant(call: Call, kind: str) -> tuple[str, str]:
    if kind.startswith("customer."):
        return call.customer_participant_id, call.customer_session_id
    if kind.startswith("acd."):
        return call.acd_participant_id, call.acd_session_id
    return call.ivr_participant_id, call.ivr_session_id


def detail_body(fact: Fact) -> Json:
    """The ``eventBody`` of the detail event for ``fact`` (a ``…DetailEventTopic…Event``)."""
    call = fact.call
    participant_id, session_id = _participant(call, fact.kind)
    if fact.kind == "attributes":
        flow_start = call.fact("flow.start")
        return {
            "eventTime": fact.time_ms,
            "conversationId": call.conversation_id,
            "participantId": participant_id,
            "attributes": dict(fact.attributes),
            "communications": [{"id": session_id, "mediaType": "VOICE"}],
            "participantStartTime": flow_start.time_ms if flow_start else call.start_ms,
        }
    body: Json = {
        "eventTime": fact.time_ms,
        "conversationId": call.conversation_id,
        "participantId": participant_id,
        "sessionId": session_id,
        "mediaType": "VOICE",
        "provider": "Edge",
        "direction": "INBOUND",
        "ani": call.ani,
        "dnis": call.flow.dnis,
        "divisionId": DIVISION_ID,
    }
    if fact.kind.startswith("flow."):
        body.update(flowType="INBOUNDCALL", flowId=call.flow.id, flowVersion=call.flow.version)
    if fact.kind == "flow.start":
        body["conversationExternalContactIds"] = []
    elif fact.kind == "flow.end":
        flow_start = call.fact("flow.start")
        exit_fields = _flow_exit(call)
        body.update(exit_fields)
        body["disconnectType"] = {
            "TRANSFER": "TRANSFER",
            "FLOW_DISCONNECT": "SYSTEM",
            "DISCONNECT": "ENDPOINT",
        }[exit_fields["exitReason"]]
        body["connectedDurationMs"] = fact.time_ms - (flow_start.time_ms if flow_start else 0)
    elif fact.kind == "flow.outcome":
        flow_start = call.fact("flow.start")
        body.update(
            flowOutcomeId=call.flow_outcome_id,
            flowOutcomeStartTime=flow_start.time_ms if flow_start else fact.time_ms,
            flowOutcomeEndTime=fact.time_ms,
            flowOutcomeValue="SUCCESS",
            flowMilestones=[
                {"milestoneId": stable_uuid("milestone", call.flow.name, name), "milestoneTime": t}
                for name, t in _milestones(call, fact)
            ],
        )
    elif fact.kind == "customer.end":
        body["disconnectType"] = _customer_disconnect(call)
        body["interactingDurationMs"] = fact.time_ms - call.start_ms
    elif fact.kind in ("acd.start", "acd.end"):
        assert call.queue is not None
        body.update(queueId=call.queue.id, routingPriority=0, requestedRoutingSkillIds=[])
        if fact.kind == "acd.start":
            body["skillExpressionApplied"] = False
        else:
            acd_start = call.fact("acd.start")
            answered = call.outcome is Outcome.ANSWERED
            body["acdOutcome"] = "ANSWERED" if answered else "ABANDON"
            body["disconnectType"] = "TRANSFER" if answered else "ENDPOINT"
            body["connectedDurationMs"] = fact.time_ms - (acd_start.time_ms if acd_start else 0)
            if answered:
                body["answeredUserId"] = call.agent_user_id
    return body


def _milestones(call: Call, fact: Fact) -> list[tuple[str, int]]:
    return [
        (f"menu-{f.attributes.get('MenuChoice', 'done')}", f.time_ms)
        for f in call.facts
        if f.kind == "attributes" and f.step < fact.step
    ]


# -- Notifications: queue snapshots and flow metrics ---------------------------------------------


def queue_topic(call: Call) -> str | None:
    return f"v2.routing.queues.{call.queue.id}.conversations" if call.queue else None


def queue_snapshot(fact: Fact) -> Json:
    """A ``QueueConversationEventTopicConversation`` as the call stands after ``fact``."""
    call = fact.call
    assert call.queue is not None
    ended = fact.kind == "customer.end"
    acd_end = call.fact("acd.end")
    acd_done = acd_end is not None and acd_end.step <= fact.step
    customer_state = "disconnected" if ended else "connected"
    participants: list[Json] = [
        {
            "id": call.customer_participant_id,
            "purpose": "customer",
            "address": call.ani,
            "connectedTime": format_ms(call.start_ms),
            "calls": [
                {
                    "id": call.customer_session_id,
                    "state": customer_state,
                    "direction": "inbound",
                    "provider": "Edge",
                }
            ],
        },
        {
            "id": call.ivr_participant_id,
            "purpose": "ivr",
            "name": call.flow.name,
            "attributes": call.attributes_until(fact.time_ms),
            "calls": [
                {"id": call.ivr_session_id, "state": "disconnected", "disconnectType": "transfer"}
            ],
        },
        {
            "id": call.acd_participant_id,
            "purpose": "acd",
            "queueId": call.queue.id,
            "name": call.queue.name,
            "calls": [
                {"id": call.acd_session_id, "state": "disconnected" if acd_done else "connected"}
            ],
        },
    ]
    if acd_done and call.outcome is Outcome.ANSWERED:
        participants.append(
            {
                "id": call.agent_participant_id,
                "purpose": "agent",
                "userId": call.agent_user_id,
                "queueId": call.queue.id,
                "calls": [
                    {"id": call.agent_session_id, "state": "disconnected" if ended else "connected"}
                ],
            }
        )
    return {
        "id": call.conversation_id,
        "participants": participants,
        "divisions": [{"division": {"id": DIVISION_ID}, "entities": [{"id": call.queue.id}]}],
    }


def flow_metrics_topic(call: Call) -> str:
    return f"v2.analytics.flow.{call.flow.id}.metrics"


def flow_metric_records(fact: Fact) -> list[Json]:
    """``FlowMetricRecord`` bodies published on the flow's metrics topic for ``fact``."""
    call = fact.call
    flow_start = call.fact("flow.start")
    started = flow_start.time_ms if flow_start else fact.time_ms
    if fact.kind == "flow.start":
        metrics = [("nFlow", 1)]
    elif fact.kind == "flow.outcome":
        metrics = [("nFlowOutcome", 1), ("tFlowOutcome", fact.time_ms - started)]
    elif fact.kind == "flow.end":
        exit_metric = "tFlowDisconnect" if call.queue is None else "tFlowExit"
        metrics = [("tFlow", fact.time_ms - started), (exit_metric, fact.time_ms - started)]
    else:
        return []
    base: Json = {
        "metricDate": format_ms(fact.time_ms),
        "conversationId": call.conversation_id,
        "conversationStart": format_ms(call.start_ms),
        "participantId": call.ivr_participant_id,
        "sessionId": call.ivr_session_id,
        "purpose": "ivr",
        "mediaType": "voice",
        "direction": "inbound",
        "ani": call.ani,
        "dnis": call.flow.dnis,
        "divisionIds": [DIVISION_ID],
        "flowId": call.flow.id,
        "flowName": call.flow.name,
        "flowType": "INBOUNDCALL",
        "flowVersion": call.flow.version,
    }
    if fact.kind == "flow.end":
        base.update(_flow_exit(call))
    return [
        {
            **base,
            "metric": name,
            "value": value,
            "recordId": stable_uuid("metric", fact.fact_id, name),
        }
        for name, value in metrics
    ]


def notifications_for(fact: Fact) -> list[tuple[str, Json]]:
    """Every (topic, eventBody) the Notifications service publishes for ``fact``."""
    out: list[tuple[str, Json]] = [(detail_topic(fact), detail_body(fact))]
    call = fact.call
    topic = queue_topic(call)
    if topic is not None and fact.kind in ("acd.start", "acd.end", "customer.end"):
        out.append((topic, queue_snapshot(fact)))
    out.extend((flow_metrics_topic(call), r) for r in flow_metric_records(fact))
    return out


# -- Analytics -----------------------------------------------------------------------------------


def _segment(start_ms: int, end_ms: int | None, segment_type: str, **extra: Any) -> Json:
    seg: Json = {"segmentStart": format_ms(start_ms), "segmentType": segment_type}
    if end_ms is not None:
        seg["segmentEnd"] = format_ms(end_ms)
    seg.update({k: v for k, v in extra.items() if v is not None})
    return seg


def analytics_conversation(call: Call, now_ms: int, *, with_attributes: bool = False) -> Json:
    """The call as the details query shows it at ``now_ms`` (``AnalyticsConversation``).

    ``with_attributes`` adds participant attributes, as the jobs API does.
    """

    def at(kind: str) -> int | None:
        f = call.fact(kind)
        return f.time_ms if f is not None and f.time_ms <= now_ms else None

    customer_end = at("customer.end")
    flow_start, flow_end = at("flow.start"), at("flow.end")
    acd_start, acd_end = at("acd.start"), at("acd.end")
    customer_disconnect = _customer_disconnect(call).lower() if customer_end else None
    participants: list[Json] = [
        {
            "participantId": call.customer_participant_id,
            "purpose": "customer",
            "sessions": [
                {
                    "sessionId": call.customer_session_id,
                    "mediaType": "voice",
                    "direction": "inbound",
                    "ani": call.ani,
                    "dnis": call.flow.dnis,
                    "segments": [
                        _segment(
                            call.start_ms,
                            customer_end,
                            "interact",
                            disconnectType=customer_disconnect,
                        )
                    ],
                }
            ],
        }
    ]
    if flow_start is not None:
        flow: Json = {
            "flowId": call.flow.id,
            "flowName": call.flow.name,
            "flowType": "INBOUNDCALL",
            "flowVersion": call.flow.version,
            "entryType": "dnis",
            "entryReason": call.flow.dnis,
        }
        outcome = call.fact("flow.outcome")
        if outcome is not None and outcome.time_ms <= now_ms:
            flow["outcomes"] = [
                {
                    "flowOutcome": f"{call.flow.name}:{call.menu_path[-1]}",
                    "flowOutcomeId": call.flow_outcome_id,
                    "flowOutcomeValue": "SUCCESS",
                    "flowOutcomeStartTimestamp": format_ms(flow_start),
                    "flowOutcomeEndTimestamp": format_ms(outcome.time_ms),
                }
            ]
        ivr_disconnect = None
        if flow_end is not None:
            flow.update(_flow_exit(call))
            if call.queue is not None:
                flow["transferTargetName"] = call.queue.name
            ivr_disconnect = {
                "TRANSFER": "transfer",
                "FLOW_DISCONNECT": "peer",
                "DISCONNECT": "endpoint",
            }[_flow_exit(call)["exitReason"]]
        ivr: Json = {
            "participantId": call.ivr_participant_id,
            "participantName": call.flow.name,
            "purpose": "ivr",
            "sessions": [
                {
                    "sessionId": call.ivr_session_id,
                    "mediaType": "voice",
                    "direction": "inbound",
                    "ani": call.ani,
                    "dnis": call.flow.dnis,
                    "flow": flow,
                    "segments": [
                        _segment(flow_start, flow_end, "ivr", disconnectType=ivr_disconnect)
                    ],
                }
            ],
        }
        if with_attributes:
            ivr["attributes"] = call.attributes_until(now_ms)
        participants.append(ivr)
    if acd_start is not None and call.queue is not None:
        answered = call.outcome is Outcome.ANSWERED
        acd_disconnect = ("transfer" if answered else "endpoint") if acd_end else None
        participants.append(
            {
                "participantId": call.acd_participant_id,
                "participantName": call.queue.name,
                "purpose": "acd",
                "sessions": [
                    {
                        "sessionId": call.acd_session_id,
                        "mediaType": "voice",
                        "direction": "inbound",
                        "segments": [
                            _segment(
                                acd_start,
                                acd_end,
                                "interact",
                                queueId=call.queue.id,
                                disconnectType=acd_disconnect,
                            )
                        ],
                    }
                ],
            }
        )
        if acd_end is not None and answered:
            participants.append(
                {
                    "participantId": call.agent_participant_id,
                    "purpose": "agent",
                    "userId": call.agent_user_id,
                    "sessions": [
                        {
                            "sessionId": call.agent_session_id,
                            "mediaType": "voice",
                            "direction": "inbound",
                            "segments": [
                                _segment(
                                    acd_end,
                                    customer_end,
                                    "interact",
                                    queueId=call.queue.id,
                                    disconnectType="client" if customer_end else None,
                                )
                            ],
                        }
                    ],
                }
            )
    conversation: Json = {
        "conversationId": call.conversation_id,
        "conversationStart": format_ms(call.start_ms),
        "originatingDirection": "inbound",
        "conversationInitiator": "customer",
        "divisionIds": [DIVISION_ID],
        "participants": participants,
    }
    if customer_end is not None:
        conversation["conversationEnd"] = format_ms(customer_end)
        conversation["selfServed"] = call.outcome is Outcome.CONTAINED
    return conversation
