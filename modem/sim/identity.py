"""Deterministic modem and SIM identities derived from (seed, port index, slot)."""

from __future__ import annotations

import random
from dataclasses import dataclass

# Type Allocation Codes (first 8 IMEI digits) of the two simulated makes.
IMEI_TAC = {"sim800": "86769503", "quectel": "86167503"}
IMEI_SERIAL_DIGITS = 6

# ICCID: 89 (telecom) 86 (China) + 2-digit issuer + 13 digits + Luhn = 19 digits.
ICCID_PREFIX = "8986"
ICCID_BODY_DIGITS = 18  # before the Luhn check digit
IMSI_MSIN_DIGITS = 10

# MCC+MNC -> (operator long name as in +COPS, issuer code in the ICCID, mobile prefix).
OPERATORS = {
    "46000": ("CHINA MOBILE", "00", "138"),
    "46001": ("CHN-UNICOM", "01", "186"),
}
# Share of SIMs that carry their own number (MSISDN) in the phonebook; many real SIMs do not.
OWN_NUMBER_SHARE = 0.7


@dataclass(frozen=True)
class SimIdentity:
    """What a SIM card tells about itself; fixed for the card's life."""

    iccid: str
    imsi: str
    operator: str
    msisdn: str | None


def luhn_digit(body: str) -> str:
    """Return the Luhn check digit that makes body + digit a valid Luhn number."""
    total = 0
    # Double every second digit counted from the right of the body (the check digit is position 0).
    for position, char in enumerate(reversed(body)):
        digit = int(char)
        if position % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    """True if the last digit of number is the Luhn check digit of the rest."""
    return number.isdigit() and len(number) > 1 and luhn_digit(number[:-1]) == number[-1]


def _rng(seed: int, *parts: object) -> random.Random:
    # A string seed is hashed with SHA-512 by random.Random, so it is stable across runs.
    return random.Random(":".join(str(p) for p in (seed, *parts)))


def _digits(rng: random.Random, count: int) -> str:
    return "".join(str(rng.randrange(10)) for _ in range(count))


def modem_imei(seed: int, index: int, make: str) -> str:
    """Return the 15-digit Luhn-valid IMEI of the modem on port `index`."""
    rng = _rng(seed, "imei", index)
    body = IMEI_TAC[make] + _digits(rng, IMEI_SERIAL_DIGITS)
    return body + luhn_digit(body)


def sim_identity(seed: int, index: int, slot: int = 0) -> SimIdentity:
    """Return the identity of the SIM in `slot` of port `index`."""
    rng = _rng(seed, "sim", index, slot)
    plmn = rng.choice(sorted(OPERATORS))
    operator, issuer, mobile_prefix = OPERATORS[plmn]
    body = ICCID_PREFIX + issuer
    body += _digits(rng, ICCID_BODY_DIGITS - len(body))
    iccid = body + luhn_digit(body)
    imsi = plmn + _digits(rng, IMSI_MSIN_DIGITS)
    msisdn = "+86" + mobile_prefix + _digits(rng, 8) if rng.random() < OWN_NUMBER_SHARE else None
    return SimIdentity(iccid=iccid, imsi=imsi, operator=operator, msisdn=msisdn)


def iccid_ef_hex(iccid: str) -> str:
    """Return EF_ICCID as AT+CRSM shows it: BCD with nibbles swapped, padded with F."""
    digits = iccid + "F" * (len(iccid) % 2)
    return "".join(digits[i + 1] + digits[i] for i in range(0, len(digits), 2))
