"""``async with`` for anything that has ``start()`` and ``stop()``."""

from __future__ import annotations

from typing import Any, Self


class StartStop:
    """``async with thing:`` starts it and always stops it. Subclasses define both."""

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.stop()
