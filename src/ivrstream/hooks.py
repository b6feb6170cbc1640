"""Named hooks, the seed's event emitter done safely: a failing callback is logged, never fatal.

Names: ``connected``, ``subscribed``, ``disconnected``, ``reconnecting``, ``gap``,
``auth_failed``, ``max_reconnects``, ``quarantined``, ``schema_field``, ``dead_lettered``,
``sink_disabled``, ``gap_closed``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

log = logging.getLogger("ivrstream.hooks")

NAMES = frozenset(
    {
        "connected",
        "subscribed",
        "disconnected",
        "reconnecting",
        "gap",
        "auth_failed",
        "max_reconnects",
        "quarantined",
        "schema_field",
        "dead_lettered",
        "sink_disabled",
        "gap_closed",
    }
)


class Hooks:
    def __init__(self) -> None:
        self._callbacks: defaultdict[str, list[Callable[..., Any]]] = defaultdict(list)
        self._tasks: set[asyncio.Task[Any]] = set()

    def on(self, name: str, callback: Callable[..., Any]) -> Callable[..., Any]:
        """Call ``callback(**details)`` whenever ``name`` happens (coroutines run as tasks)."""
        if name not in NAMES:
            raise ValueError(f"unknown hook {name!r}; known: {', '.join(sorted(NAMES))}")
        self._callbacks[name].append(callback)
        return callback

    def emit(self, hook: str, /, **details: Any) -> None:
        for callback in self._callbacks.get(hook, ()):
            try:
                result = callback(**details)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._tasks.add(task)
                    task.add_done_callback(self._finished)
            except Exception:
                log.exception("hook %s failed", hook)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("hook task failed", exc_info=task.exception())
