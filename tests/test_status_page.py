"""The live status page in headless Chromium: it loads, follows the events, shows a sink outage.

Runs Debian's ``chromium`` through PyPI ``playwright`` (its own browser download is not needed).
Where Chromium or Playwright is missing the test is skipped with the reason; under ``CI=true``
it fails instead. Screenshots go to ``docs/status-page*.png`` when ``IVRSTREAM_SCREENSHOTS`` is
set (``make screenshots``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from ivrstream.aio.monitor import Monitor
from ivrstream.aio.subscriber import Subscriber
from ivrstream.receiver import Receiver
from tests.aio.support import committed, es_config, until

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
DOCS = Path(__file__).parent.parent / "docs"


def browser_or_skip() -> tuple[Any, str | None]:
    reason = None
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        reason = "playwright is not installed"
    else:
        if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
            reason = f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser test cannot run under CI=true: {reason}")
        pytest.skip(reason)
    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    return async_playwright, executable


async def test_the_page_loads_follows_events_and_shows_a_sink_outage(emulator_factory, tmp_path):
    async_playwright, executable = browser_or_skip()
    traffic = {"rate": 40, "time_scale": 60}  # calls last a few seconds: some are in the IVR
    async with (
        emulator_factory(**traffic) as emu,
        Receiver(secret=SECRET, db=tmp_path / "received.db") as receiver,
    ):
        config = es_config(
            emu,
            tmp_path / "j.db",
            sinks={
                "webhook": {
                    "url": receiver.url,
                    "secret": SECRET,
                    "retry_base": 0.05,
                    "retry_cap": 0.2,
                    "max_attempts": 1_000,
                },
                "jsonl": {"path": str(tmp_path / "events.jsonl")},
            },
        )
        sub = Subscriber(config)
        monitor = Monitor(sub, listen="127.0.0.1:0")
        async with sub:
            await monitor.start()
            try:
                await committed(sub, 50)
                async with async_playwright() as p:
                    browser = await p.chromium.launch(
                        executable_path=executable,
                        args=ARGS,
                    )
                    page = await browser.new_page(viewport={"width": 1100, "height": 900})
                    page.set_default_timeout(15_000)  # a clear failure, not a hang
                    await page.goto(f"{monitor.url}/")
                    await page.wait_for_function("document.body.dataset.updated")
                    assert await page.title() == "ivrstream"
                    await page.wait_for_function(
                        "document.getElementById('ready').textContent === 'ready'"
                    )
                    first = await _committed(page)
                    # it updates as events arrive
                    await page.wait_for_function(
                        f"Number(document.getElementById('committed').textContent"
                        f".replace(/,/g, '')) > {first}"
                    )
                    rows = await page.locator("#sinks tbody tr").all_inner_texts()
                    assert any(r.startswith("webhook") for r in rows)
                    flows = await page.locator("#flows tbody tr").count()
                    assert flows > 0
                    if os.environ.get("IVRSTREAM_SCREENSHOTS"):
                        await page.screenshot(path=str(DOCS / "status-page.png"), full_page=True)

                    # the receiver goes down: the webhook row turns red, its backlog grows
                    receiver.set_faults(fail_rate=1.0, status=503)
                    webhook = sub.dispatchers[0]
                    await until(lambda: webhook.stats.retries >= 3)
                    await page.wait_for_function(
                        "[...document.querySelectorAll('#sinks tbody tr.trouble')]"
                        ".some(r => r.textContent.startsWith('webhook'))",
                        timeout=10_000,
                    )
                    trouble = await page.locator("#sinks tbody tr.trouble").inner_text()
                    assert "retrying" in trouble
                    if os.environ.get("IVRSTREAM_SCREENSHOTS"):
                        await page.screenshot(
                            path=str(DOCS / "status-page-outage.png"), full_page=True
                        )
                    receiver.set_faults(fail_rate=0.0)
                    await page.wait_for_function(
                        "![...document.querySelectorAll('#sinks tbody tr.trouble')]"
                        ".some(r => r.textContent.startsWith('webhook'))",
                        timeout=15_000,
                    )
                    content = await page.content()
                    assert "demo-secret" not in content
                    assert SECRET not in content
                    await browser.close()
            finally:
                await monitor.stop()


async def _committed(page: Any) -> int:
    text = await page.locator("#committed").inner_text()
    return int(text.replace(",", "")) if text.replace(",", "").isdigit() else 0
