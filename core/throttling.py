"""DRF's scoped throttle, keyed on the client address that core.net reads (one reading everywhere)."""

from rest_framework.throttling import ScopedRateThrottle as DrfScopedRateThrottle

from core.net import client_ip


class ScopedRateThrottle(DrfScopedRateThrottle):
    """Per user when signed in, else per client address as core.net.client_ip sees it (so the
    TRUSTED_PROXY_COUNT setting decides whether X-Forwarded-For counts, not the header's sender)."""

    def get_ident(self, request):
        return client_ip(request) or ""
