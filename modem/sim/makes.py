"""The modem makes the simulator can impersonate and how they differ."""

from __future__ import annotations

from dataclasses import dataclass

# Commands listed by AT+CLAC. python-gsmmodem refuses AT+CSCS="UCS2" unless +CSCS is
# listed, and picks its call-handling table from +WIND/+ZPAS (which we never list).
COMMON_CLAC = (
    "ATZ",
    "ATE",
    "ATI",
    "AT&F",
    "AT+CFUN",
    "AT+CMEE",
    "AT+CPIN",
    "AT+CLAC",
    "AT+CGMI",
    "AT+CGMM",
    "AT+CGMR",
    "AT+CGSN",
    "AT+CIMI",
    "AT+CCID",
    "AT+CRSM",
    "AT+CSQ",
    "AT+CREG",
    "AT+COPS",
    "AT+CMGF",
    "AT+CSCA",
    "AT+CSMP",
    "AT+CPMS",
    "AT+CNMI",
    "AT+CMGS",
    "AT+CMGL",
    "AT+CMGR",
    "AT+CMGD",
    "AT+CMMS",
    "AT+CSCS",
    "AT+CNUM",
    "AT+CLIP",
    "AT+CRC",
    "AT+CVHU",
    "AT+CUSD",
)


@dataclass(frozen=True)
class Make:
    """Static traits of one modem model, as seen over AT."""

    key: str
    manufacturer: str
    model: str
    revision: str
    cops_act: int  # access technology in +COPS?: 0 GSM, 7 LTE
    cnmi_max_ds: int  # SIM800 accepts ds=0/1 only (reports inline as +CDS)
    ccid_prefixed: bool  # Quectel answers "+CCID: ...", SIM800 bare digits
    has_qccid: bool
    has_ddet: bool
    clac: tuple[str, ...]
    has_qdsim: bool = False  # Quectel's dual-SIM AT+QDSIM (offered when the port has slots)


SIM800 = Make(
    key="sim800",
    manufacturer="SIMCOM_Ltd",
    model="SIMCOM_SIM800C",
    revision="Revision:1418B05SIM800C24",
    cops_act=0,
    cnmi_max_ds=1,
    ccid_prefixed=False,
    has_qccid=False,
    has_ddet=True,
    clac=(*COMMON_CLAC, "AT+DDET"),
)

QUECTEL = Make(
    key="quectel",
    manufacturer="Quectel",
    model="EC25",
    revision="EC25EFAR06A03M4G",
    cops_act=7,
    cnmi_max_ds=2,
    ccid_prefixed=True,
    has_qccid=True,
    has_ddet=False,
    clac=(*COMMON_CLAC, "AT+QCCID"),
    has_qdsim=True,
)

MAKES = {m.key: m for m in (SIM800, QUECTEL)}
MIXED = "mixed"


def make_for_port(make: str, index: int) -> Make:
    """Return the make of port `index`: the named one, or for "mixed" SIM800 on even ports."""
    if make == MIXED:
        return SIM800 if index % 2 == 0 else QUECTEL
    try:
        return MAKES[make]
    except KeyError:
        raise ValueError(f"unknown modem make {make!r}; use {sorted(MAKES)} or {MIXED!r}") from None
