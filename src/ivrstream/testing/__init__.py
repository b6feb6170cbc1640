"""Test helpers shipped with the product: use them to test code that uses ivrstream."""

from ivrstream.testing.clock import FakeClock

__all__ = ["FakeClock"]
