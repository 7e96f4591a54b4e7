"""Tables of the gateway's SQLite file (peewee models) and the message state names."""

from __future__ import annotations

from enum import StrEnum

from peewee import (
    AutoField,
    BooleanField,
    DatabaseProxy,
    FloatField,
    IntegerField,
    Model,
    TextField,
)
from playhouse.sqlite_ext import AutoIncrementField

database = DatabaseProxy()


class State(StrEnum):
    """A message's state, as the contract names it."""

    QUEUED = "queued"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    UNCERTAIN = "uncertain"


TERMINAL = frozenset({State.FAILED, State.EXPIRED, State.CANCELLED, State.UNCERTAIN,
                      State.DELIVERED})
WAITING = frozenset({State.QUEUED, State.SCHEDULED})

# Legal moves; anything else is a bug the store refuses to write.
TRANSITIONS: dict[State, frozenset[State]] = {
    State.QUEUED: frozenset({State.SENDING, State.SCHEDULED, State.EXPIRED, State.CANCELLED,
                             State.FAILED}),
    State.SCHEDULED: frozenset({State.QUEUED, State.EXPIRED, State.CANCELLED, State.FAILED}),
    State.SENDING: frozenset({State.SENT, State.FAILED, State.QUEUED, State.UNCERTAIN}),
    State.SENT: frozenset({State.DELIVERED, State.FAILED}),
}


class _Base(Model):
    class Meta:
        database = database
        legacy_table_names = False


class Message(_Base):
    """One outbound SMS as HQ sent it, and where it is in its life."""

    id = AutoField()
    hq_id = TextField(unique=True)
    batch_id = TextField()
    to = TextField()  # E.164
    text = TextField()
    encoding = TextField()
    parts = IntegerField()
    priority = IntegerField()
    not_before = FloatField(null=True)  # epoch seconds
    expires_at = FloatField(null=True)
    delivery_report = BooleanField()
    urgent = BooleanField()
    rank = IntegerField(default=0)  # fair-queue position: batches of equal priority interleave
    avoid_iccid = TextField(null=True)  # the SIM it last failed on: try another first
    state = TextField()
    attempts = IntegerField(default=0)
    port = TextField(null=True)
    iccid = TextField(null=True)
    error_code = TextField(null=True)
    error_reason = TextField(null=True)
    created_at = FloatField()
    updated_at = FloatField()

    class Meta:
        indexes = ((("batch_id",), False),)


class Part(_Base):
    """One PDU the network took: (SIM, TP-MR) is what a status report names."""

    id = AutoField()
    message_id = IntegerField()
    number = IntegerField()  # 1-based
    iccid = TextField()
    mr = IntegerField()
    sent_at = FloatField()

    class Meta:
        indexes = ((("message_id", "number"), True), (("iccid", "mr"), False))


class PartReport(_Base):
    """The latest status report for a sent part (TP-ST), keyed like Part."""

    part_id = IntegerField(primary_key=True)
    status = IntegerField()
    final = BooleanField()
    at = FloatField()


class InboundPart(_Base):
    """One received PDU (a whole SMS or one part), committed before it leaves the modem."""

    id = AutoField()
    iccid = TextField()
    port = TextField()
    sender = TextField()
    reference = IntegerField(null=True)  # None: a single-part message
    total = IntegerField()
    number = IntegerField()
    text = TextField()
    encoding = TextField()
    fingerprint = TextField()  # same stored PDU -> same fingerprint: reading it twice is harmless
    received_at = FloatField()
    inbound_id = TextField(null=True)  # set once assembled into an Inbound

    class Meta:
        indexes = ((("iccid", "fingerprint"), True),
                   (("iccid", "sender", "reference", "total"), False))


class Inbound(_Base):
    """A reassembled inbound SMS as HQ hears it; `id` is stable across re-publishing."""

    id = TextField(primary_key=True)
    iccid = TextField()
    port = TextField()
    sender = TextField()
    text = TextField()
    parts = IntegerField()
    complete = BooleanField()
    received_at = FloatField()
    in_reply_to = TextField(null=True)  # hq_id of the last message sent to `sender`


class StopEntry(_Base):
    """A number that opted out (or that HQ stop-listed): nothing more goes to it."""

    number = TextField(primary_key=True)
    added_at = FloatField()
    source = TextField()  # "sms" (keyword reply) or "hq"
    keyword = TextField(null=True)


class NumberHealth(_Base):
    """Consecutive permanent delivery failures per number (number_inactive)."""

    number = TextField(primary_key=True)
    failures = IntegerField(default=0)
    reported = BooleanField(default=False)


class Event(_Base):
    """Something HQ must hear, waiting to be published (the transactional outbox)."""

    seq = AutoIncrementField()  # AUTOINCREMENT: never reused, so seq strictly increases
    topic = TextField()  # suffix under smsgw/{gw}/
    body = TextField()  # JSON object without "gw" and "seq"
    retain = BooleanField(default=False)
    # Set on a range row (store/outbox.py): seqs seq..last_seq are the first statuses
    # of consecutive messages, built from their rows when published.
    last_seq = IntegerField(null=True)


class Sim(_Base):
    """A SIM card we have seen, keyed by ICCID, and its send counters."""

    iccid = TextField(primary_key=True)
    imsi = TextField(null=True)
    last_port = TextField(null=True)
    last_imei = TextField(null=True)
    # Calendar-period counters of SMS parts sent, each tagged with the period it
    # counts (gateway-local "2026-11-23T18:05", "2026-11-23T18", "2026-11-23", "2026-11"):
    # a stale key means the count is zero. They survive restarts and SIM moves.
    minute_key = TextField(null=True)
    minute_count = IntegerField(default=0)
    hour_key = TextField(null=True)
    hour_count = IntegerField(default=0)
    day_key = TextField(null=True)
    day_count = IntegerField(default=0)
    month_key = TextField(null=True)
    month_count = IntegerField(default=0)
    sent_total = IntegerField(default=0)
    last_sent_at = FloatField(null=True)
    blocked_until = FloatField(null=True)  # benched after repeated failures
    quota_key = TextField(null=True)  # the period whose limit was announced reached


class SeenSignature(_Base):
    """The signature of a signed batch already answered: a copy of it is a replay."""

    sig = TextField(primary_key=True)  # lower-case hex HMAC-SHA256
    ts = IntegerField(index=True)  # signing time: the row goes once it is outside the window


TABLES = (Message, Part, PartReport, InboundPart, Inbound, StopEntry, NumberHealth, Event, Sim,
          SeenSignature)

# Partial indexes keep the dispatcher's pick O(log n) however large the queue grows.
EXTRA_DDL = (
    "CREATE INDEX IF NOT EXISTS message_queue ON message(urgent DESC, priority DESC, rank, id) "
    "WHERE state = 'queued'",
    "CREATE INDEX IF NOT EXISTS message_due ON message(not_before) WHERE state = 'scheduled'",
    "CREATE INDEX IF NOT EXISTS message_expiry ON message(expires_at) "
    "WHERE state IN ('queued', 'scheduled') AND expires_at IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS message_sending ON message(id) WHERE state = 'sending'",
    'CREATE INDEX IF NOT EXISTS message_to ON message("to", updated_at)',
    "CREATE INDEX IF NOT EXISTS inbound_part_open ON inbound_part(received_at) "
    "WHERE inbound_id IS NULL",
    # Range rows only (a handful): deleting acknowledged ones must not scan an outbox
    # that grew through a long broker outage.
    "CREATE INDEX IF NOT EXISTS event_range_end ON event(last_seq) WHERE last_seq IS NOT NULL",
)
