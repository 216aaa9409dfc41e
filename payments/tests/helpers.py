import json

from django.conf import settings

from core import signatures
from payments import sandbox
from payments.models import SandboxPayment

WEBHOOK = "/api/wallet/topups/webhooks/sandbox/"


def event_body(top_up, *, status="SUCCEEDED", **overrides) -> bytes:
    data = {
        "reference": top_up.provider_reference,
        "merchant_reference": top_up.merchant_reference,
        "status": status,
        "amount": f"{top_up.amount:.2f}",
        "currency": top_up.currency,
        **overrides,
    }
    return json.dumps({"id": "evt_test", "type": f"payment.{status.lower()}", "created": 0, "data": data}).encode()


def post_webhook(api_client, body: bytes, *, secret=None, timestamp=None, path=WEBHOOK):
    secret = secret if secret is not None else settings.PAYMENT_WEBHOOK_SECRETS[0]
    header = signatures.sign(secret=secret, body=body, timestamp=timestamp)
    return api_client.generic("POST", path, body, content_type="application/json", HTTP_X_SIGNATURE=header)


def sandbox_events(top_up) -> list[str]:
    return [entry["event"] for entry in SandboxPayment.objects.get(reference=top_up.provider_reference).log]


def pay_in_sandbox(top_up, outcome="succeeded"):
    """The payer's action on the sandbox page, without the webhook (tests post it themselves)."""
    payment = SandboxPayment.objects.get(reference=top_up.provider_reference)
    payment.status = sandbox.OUTCOMES[outcome][0]
    payment.save(update_fields=["status"])
