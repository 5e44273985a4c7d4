"""Slowing down password guessing: per client, a wait that doubles after each wrong password,
then a lockout.

A password is only looked at when its client has no wait pending; an attempt during the
wait is answered "wait N s" without being checked, so sending faster gains nothing. Ten
wrong passwords in a row (about eight and a half minutes of waits) lock the client out for
fifteen minutes, and every wrong password after that locks it again until it has made no
wrong guess for an hour. A right password forgets the client's record.

A client is its IP address, or its /64 network for IPv6 (one host usually holds a whole
/64). Behind a reverse proxy every visitor has the proxy's address unless the proxy sends
X-Forwarded-For (uvicorn trusts that header from 127.0.0.1 only): then one guesser locks
everyone out, which keeps the password safe and costs the demo its sign-in for a while.
"""
from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

FIRST_WAIT = 1.0  # s after the first wrong password; doubles with each further one
MAX_WAIT = 300.0
LOCK_AFTER = 10  # wrong passwords in a row before the lockout
LOCK_SECONDS = 900.0
FORGET_AFTER = 3600.0  # s without a wrong password: the client starts afresh
MAX_CLIENTS = 10_000  # records kept (oldest dropped first): the table cannot grow without bound


@dataclass
class Record:
    failures: int = 0
    until: float = 0.0  # no password is checked before this time
    last: float = 0.0  # time of the last wrong password


@dataclass(frozen=True)
class Verdict:
    """What a client is told after a wrong password or an attempt during its wait."""

    wait: float  # s before the next password is looked at
    locked: bool  # the wait is a lockout

    @property
    def seconds(self) -> int:
        """The wait in whole seconds, rounded up (for Retry-After and the message)."""
        return max(1, math.ceil(self.wait))

    def sentence(self) -> str:
        if self.locked:
            minutes = math.ceil(self.wait / 60)
            return (f"Too many wrong passwords from your address: signing in is locked for "
                    f"{minutes} minute{'s' if minutes != 1 else ''}.")
        n = self.seconds
        return f"Wait {n} second{'s' if n != 1 else ''} before the next try."


def client_key(host: str | None) -> str:
    """The throttling key of a client address: the address, or its /64 for IPv6."""
    if not host:
        return "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class Throttle:
    """Per-client waits between password checks. Not thread-safe: the event loop owns it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.clients: OrderedDict[str, Record] = OrderedDict()

    def pending(self, client: str) -> Verdict | None:
        """The wait `client` must still sit out, or None if its password may be checked now."""
        rec = self.clients.get(client)
        now = self.clock()
        if rec is None or now >= rec.until:
            return None
        return Verdict(rec.until - now, rec.failures >= LOCK_AFTER)

    def failed(self, client: str) -> Verdict:
        """Record a wrong password from `client`; returns the wait before its next one."""
        now = self.clock()
        rec = self.clients.pop(client, None)
        if rec is None or now - rec.last > FORGET_AFTER:
            rec = Record()
        rec.failures += 1
        rec.last = now
        locked = rec.failures >= LOCK_AFTER
        wait = LOCK_SECONDS if locked else min(FIRST_WAIT * 2 ** (rec.failures - 1), MAX_WAIT)
        rec.until = now + wait
        self.clients[client] = rec  # newest last
        while len(self.clients) > MAX_CLIENTS:
            self.clients.popitem(last=False)
        return Verdict(wait, locked)

    def succeeded(self, client: str) -> None:
        self.clients.pop(client, None)
