"""The sans-I/O core: no asyncio, sockets, clocks or randomness. Time and rng are arguments."""
