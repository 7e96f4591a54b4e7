"""smsgw: an SMS gateway daemon for a pool of serial GSM modems."""

__version__ = "0.1.0"
