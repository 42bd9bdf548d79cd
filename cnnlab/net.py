"""Can this machine download anything? One cheap, cached answer for the status messages.

``CNNLAB_OFFLINE=1`` says no without trying (tests set it). Otherwise a TCP connection to the
host is tried once (1.5 s at most) and the answer is remembered for a minute, so a page that
shows "downloadable" really can download, and an offline machine sees "missing" with what to do.
"""

from __future__ import annotations

import os
import socket
import time

from .i18n import N_

# a message, or the end of one: whoever shows it translates it (``_(DOWNLOADS_DISABLED)``)
DOWNLOADS_DISABLED = N_("downloads are disabled (CNNLAB_OFFLINE=1)")

_CACHE: dict[str, tuple[float, bool]] = {}
_TTL = 60.0


def offline_forced() -> bool:
    return os.environ.get("CNNLAB_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def can_reach(host: str, port: int = 443, timeout: float = 1.5) -> bool:
    if offline_forced():
        return False
    now = time.monotonic()
    hit = _CACHE.get(host)
    if hit and now - hit[0] < _TTL:
        return hit[1]
    try:
        with socket.create_connection((host, port), timeout=timeout):
            ok = True
    except OSError:
        ok = False
    _CACHE[host] = (now, ok)
    return ok
