"""The client's address, read one way everywhere (throttles, OTP limits, OTP records).

The socket's peer, REMOTE_ADDR: an `X-Forwarded-For` header is written by the client and would let
one header lift every per-address limit. (The proxy-aware version of this helper comes with the
trusted-proxy setting of security issue 12.3; callers do not change.)
"""


def client_ip(request) -> str | None:
    """The address of the client that sent `request` (a Django or DRF request)."""
    return request.META.get("REMOTE_ADDR") or None
