"""ivrstream as a library: follow IVR calls as they are committed to the journal.

    export GENESYS_ENV=eu-west-1 GENESYS_CLIENT_ID=… GENESYS_CLIENT_SECRET=…
    python examples/library.py [--config ivrstream.toml] [--events N]

Every event printed is already durable in the journal (``ivrstream.db`` by default): stop and
start again, and the subscriber resumes where it stopped — nothing lost, nothing twice.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter

from ivrstream import config
from ivrstream.aio.subscriber import Subscriber


async def follow(settings: config.Config, limit: int | None) -> Counter[str]:
    seen: Counter[str] = Counter()
    async with Subscriber(settings) as sub:
        sub.on("connected", lambda **info: print("connected"))
        sub.on("gap", lambda **gap: print(f"gap {gap['id']}: backfill will fill it"))
        sub.on("gap_closed", lambda **gap: print(f"gap {gap['id']} {gap['state']}"))
        async for event in sub:  # committed events only, in journal order
            seen[event.event_type] += 1
            flow = event.data.get("flowName") or (event.data.get("flow") or {}).get("name")
            print(f"{event.event_time} {event.conversation_id} {event.event_type} {flow or ''}")
            if limit is not None and sum(seen.values()) >= limit:
                break
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="TOML configuration (default: environment only)")
    parser.add_argument("--events", type=int, help="stop after this many events")
    args = parser.parse_args()
    seen = asyncio.run(follow(config.load(args.config), args.events))
    print("by type:", dict(seen))


if __name__ == "__main__":
    main()
