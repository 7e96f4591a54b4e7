"""Errors raised by the simulated modem pool; all derive from SimError."""


class SimError(Exception):
    """Base of every error the simulator raises."""


class InvalidPdu(SimError, ValueError):
    """A PDU given to AT+CMGS is not a well-formed SMS-SUBMIT of the declared length."""


class ControlError(SimError, RuntimeError):
    """A control-socket request failed or was refused; the message says why."""


class PortError(SimError, LookupError):
    """A control command named a port the pool does not have."""
