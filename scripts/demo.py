"""Live demo: a simulated 4-port modem pool, a private mosquitto, the daemon, and HQ.

Run with `make demo`. Everything runs under ./demo-run and stops at the end
(or on Ctrl-C); nothing is left listening.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.broker import Broker  # noqa: E402
from tests.support.gateway import Daemon, SimulatedPool  # noqa: E402
from tests.support.hq import Hq  # noqa: E402

RUN_DIR = ROOT / "demo-run"
PORTS = 4
LATENCY = (1.0, 0.3)  # seconds per AT+CMGS, like a busy GSM network
GW = "gw-demo"

BATCH = {
    "batch_id": "demo-holiday",
    "template": "尊敬的{name}，您的积分{points}分将于{date}到期。回复TD退订",
    "messages": [
        {"id": "cn-1", "to": "+8613800138000",
         "vars": {"name": "林瓊", "points": 150, "date": "11月30日"}},
        {"id": "cn-2", "to": "13900139000",
         "vars": {"name": "王芳", "points": 320, "date": "12月1日"}},
        {"id": "ru-1", "to": "+79161234567",
         "text": "Здравствуйте, Анна! Ваш пробный период заканчивается завтра. "
                 "Продлите подписку со скидкой 20%: ответьте ДА. СТОП — отписаться."},
        {"id": "ru-2", "to": "+79031234567", "text": "Напоминаем об оплате счёта №1042 до 30.11."},
        {"id": "en-1", "to": "+447911123456",
         "text": "Your order #A-1042 is confirmed: {2 items} ~ €39.90. Reply STOP to opt out."},
        {"id": "bad-1", "to": "12345", "text": "this number is not valid"},
        {"id": "cn-3", "to": "+8613700137000", "text": "新年快乐！感谢您一年来的支持。",
         "urgent": True},
    ],
}


def main() -> int:
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    RUN_DIR.mkdir()
    broker = Broker(RUN_DIR / "broker")
    broker.start()
    pool = daemon = hq = None
    try:
        print(f"mosquitto      127.0.0.1:{broker.port}")
        pool = SimulatedPool(RUN_DIR / "pool" / "dev", PORTS, latency=LATENCY)
        print(f"modem pool     {PORTS} simulated ports in {pool.dir} "
              f"({LATENCY[0]} s ± {LATENCY[1]} s per send)")
        daemon = Daemon(RUN_DIR / "gateway", broker.port, str(pool.dir / "ttyGSM*"), gw=GW)
        daemon.start()
        print(f"daemon         smsgw run --config {daemon.config}  (log: {daemon.log_path})")
        hq = Hq(broker.port, GW)
        state = hq.wait_online()
        print(f"gateway online, ports: {[m['port'] + ':' + m['state'] for m in state['modems']]}")
        print(f"\nHQ publishes batch {BATCH['batch_id']!r} with {len(BATCH['messages'])} "
              "messages to smsgw/gw-demo/outbox\n")
        hq.publish("outbox", BATCH)
        _follow(hq)
        print("\nWhat the simulated network received:")
        for record in pool.network():
            print(f"  {record['port']}  {record['to']:<15} {record['encoding']:<5} "
                  f"{record['parts']} part(s)  {record['text']}")
        _reply_arrives(hq, pool)
        print("\nsmsgw status (from the daemon's control socket):")
        from daemon.cli import main as smsgw

        smsgw(["status", "--config", str(daemon.config)])
        return 0
    finally:
        if hq:
            hq.close()
        if daemon and daemon.alive:
            daemon.stop()
        if pool:
            pool.stop()
        broker.stop()


def _reply_arrives(hq: Hq, pool: SimulatedPool) -> None:
    """A customer answers "退订" (unsubscribe): HQ sees the reply and the opt-out."""
    from modem.sim.control import request

    print("\nThe customer at +8613800138000 replies 退订 (unsubscribe) to port ttyGSM0:")
    request(pool.dir, {"cmd": "inject_sms", "port": 0, "from": "+8613800138000",
                       "text": "退订"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(
            e["type"] == "opt_out" for e in hq.on("events")):
        time.sleep(0.1)
    for reply in hq.on("inbox"):
        print(f"  inbox   {reply['from']} {reply['text']!r} in reply to "
              f"{reply.get('in_reply_to', {}).get('id')}")
    for event in hq.on("events"):
        if event["type"] == "opt_out":
            print(f"  event   opt_out {event['number']} keyword={event['keyword']}")


def _follow(hq: Hq) -> None:
    """Print each ack and status as it arrives until every accepted message is final."""
    shown = 0
    deadline = time.monotonic() + 120
    final = {"sent", "delivered", "failed", "expired", "cancelled", "uncertain"}
    accepted: set[str] | None = None
    while time.monotonic() < deadline:
        with hq._lock:
            new = hq.received[shown:]
            shown += len(new)
        for topic, body in new:
            if topic == "ack":
                accepted = {m["id"] for m in BATCH["messages"]} - {
                    r["id"] for r in body.get("rejected", [])}
                print(f"  ack     accepted={body['accepted']} duplicates={body['duplicates']} "
                      f"rejected={[(r['id'], r['code']) for r in body['rejected']]}")
            elif topic == "status":
                sim = body.get("sim", {}).get("port", "")
                extra = f"{body.get('encoding', '')} {body.get('parts', '')} part(s)"
                print(f"  status  {body['id']:<6} {body['state']:<9} {sim:<8} {extra}")
        if accepted is not None:
            done = {s["id"] for s in hq.on("status") if s["state"] in final}
            if accepted <= done:
                return
        time.sleep(0.1)
    print("  (gave up waiting after 120 s)")


if __name__ == "__main__":
    sys.exit(main())
