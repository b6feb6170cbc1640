"""A journal connection confined to one worker thread, for readers in the event loop.

SQLite connections must not be used by two threads at once, nor closed while a query runs on
another thread (a cancelled ``await asyncio.to_thread(...)`` leaves its query running): every
call and the final close go through the same single-thread executor, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from ivrstream.journal import Journal, open_journal

T = TypeVar("T")


class JournalReader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="ivrstream-reader")
        self._journal: Journal | None = None

    async def call(self, function: Callable[[Journal], T]) -> T:
        """Run ``function(journal)`` on the reader's thread (opening the journal first)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run, function)

    def _run(self, function: Callable[[Journal], T]) -> T:
        if self._journal is None:
            self._journal = open_journal(self.path)
        return function(self._journal)

    def close(self) -> None:
        """Close after whatever is running finishes; never blocks the caller."""
        self._executor.submit(self._close)
        self._executor.shutdown(wait=False)

    def _close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None
