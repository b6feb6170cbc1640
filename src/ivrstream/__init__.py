"""ivrstream: every Genesys Cloud IVR event, once, in order, durably, with an audit trail."""

__version__ = "0.1.0"
