"""A local Genesys Cloud: OAuth, Event Streams, Notifications, analytics, IVR traffic and faults.

Start one with :func:`ivrstream.emulator.server.run_emulator` (in-process, port 0) or
``ivrstream emulator`` (command line). Every surface is driven by one seeded traffic model, so what
a live socket missed is exactly what analytics gives back, and ``GET /emulator/ledger`` tells a
test what was generated and what was sent.
"""
