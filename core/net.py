"""The client's address, read one way everywhere (throttles, OTP limits, OTP records, login lockout).

By default the socket's peer, REMOTE_ADDR: an `X-Forwarded-For` header is written by whoever sends the
request, and trusting it would let one header lift every per-address limit. Behind proxies that append
to `X-Forwarded-For`, TRUSTED_PROXY_COUNT = N says how many: the client is the address the outermost
of them saw, the N-th entry from the right; whatever the client wrote further left is ignored.
"""

from django.conf import settings


def client_ip(request) -> str | None:
    """The address of the client that sent `request` (a Django or DRF request)."""
    remote_addr = request.META.get("REMOTE_ADDR") or None
    proxies = settings.TRUSTED_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if not proxies or not forwarded:
        return remote_addr
    hops = [hop.strip() for hop in forwarded.split(",")]
    # Fewer hops than proxies: the request did not come the way the deployment says; the leftmost
    # entry is the furthest anyone vouches for (DRF's NUM_PROXIES reads it the same way).
    return hops[-min(proxies, len(hops))] or remote_addr
