import logging

from django.urls import reverse
from django.utils.decorators import method_decorator
from drf_yasg import openapi
from drf_yasg.utils import swagger_auto_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import NotFound
from core.idempotency import HEADER, IDEMPOTENCY_KEY_PARAMETER, idempotent
from core.signatures import HEADER as SIGNATURE_HEADER
from core.signatures import SignedWebhookView
from purchases import gateways, selectors, services
from purchases.api.filters import PurchaseFilter
from purchases.api.serializers import (
    DuplicatePurchaseErrorSerializer,
    OperatorCallbackResultSerializer,
    OperatorCallbackSerializer,
    PurchaseInputSerializer,
    PurchaseResultSerializer,
    PurchaseSerializer,
)

logger = logging.getLogger(__name__)


def _location(body) -> dict:
    """The purchase's own URL, to poll (also on a replayed answer: only its body is stored)."""
    purchase_id = (body or {}).get("purchase", {}).get("id") if isinstance(body, dict) else None
    return {"Location": reverse("purchases:detail", kwargs={"pk": purchase_id})} if purchase_id else {}


class PurchaseCreateView(APIView):
    """Recharge a mobile number with a plan, paid from the caller's wallet.

    The price is held and the purchase accepted at once: **202** with the purchase and a `Location`
    header, its URL. The recharge is sent to the operator by a worker; poll `GET` on that URL until
    `status` is final: SUCCESS (charged, margins paid), FAILED (nothing was charged, the hold was
    released) or, later, REFUNDED. While PENDING the price stays held (`available` excludes it).
    Without a task broker (the SQLite demo) the operator is called before the answer, which then
    already carries the final status. `mobile_number` must be a valid mobile number of the plan's
    operator's country, written with digits, spaces, + and - only: otherwise 400
    `invalid_mobile_number` and nothing is held.

    Retries: send an `Idempotency-Key`; a retry with it answers the same purchase and buys nothing.
    A request without a key is refused with **409** `duplicate_purchase` (naming the earlier
    purchase in `purchase_id`) when the same buyer bought the same amount for the same number less
    than PURCHASE_DUPLICATE_WINDOW_MINUTES ago and that purchase has not failed."""

    throttle_scope = "money"

    @swagger_auto_schema(
        operation_id="purchases_create",
        tags=["purchases"],
        request_body=PurchaseInputSerializer,
        manual_parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={
            202: openapi.Response(
                "Accepted: the purchase (PENDING until a worker settles it) and the buyer's balance.",
                PurchaseResultSerializer,
                headers={"Location": {"type": "string", "description": "The purchase's URL, to poll."}},
            ),
            409: openapi.Response(
                "`duplicate_purchase`: an unkeyed repeat of a recent purchase that has not failed; "
                "`purchase_id` names it. (Also `idempotency_request_in_progress`.)",
                DuplicatePurchaseErrorSerializer,
            ),
        },
    )
    # With a broker, the answer is stored by the acceptance's own transaction (one commit, not three);
    # with tasks run in the process, the operator is called after that commit and the answer says what
    # it answered, so the key is claimed first and answered after (core.idempotency).
    @idempotent(atomic=lambda: not services.fulfilled_in_process(), replay_headers=_location)
    def post(self, request):
        serializer = PurchaseInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        outcome = services.purchase_recharge(
            buyer=request.user,
            plan_id=serializer.validated_data["plan_id"],
            mobile_number=serializer.validated_data["mobile_number"],
            idempotency_key=request.headers.get(HEADER),
        )
        body = PurchaseResultSerializer(
            {"purchase": outcome.purchase, "balance": outcome.balance, "available": outcome.available}
        ).data
        return Response(body, status=status.HTTP_202_ACCEPTED, headers=_location(body))


@method_decorator(name="get", decorator=swagger_auto_schema(operation_id="purchases_history", tags=["purchases"]))
class PurchaseHistoryView(generics.ListAPIView):
    """Purchases in the caller's scope, newest first: an admin sees all, a distributor its own
    and its retailers', a retailer or a client its own."""

    serializer_class = PurchaseSerializer
    filterset_class = PurchaseFilter
    search_fields = ["mobile_number", "operator_reference", "buyer__username"]
    ordering_fields = ["created_at", "amount"]
    ordering = ["-created_at", "-id"]

    def get_queryset(self):
        return selectors.purchases_for(user=self.request.user)


class PurchaseDetailView(APIView):
    """One purchase in the caller's scope (404 outside it)."""

    @swagger_auto_schema(operation_id="purchases_read", tags=["purchases"], responses={200: PurchaseSerializer})
    def get(self, request, pk):
        return Response(PurchaseSerializer(selectors.purchase_for(user=request.user, pk=pk)).data)


class OperatorCallbackView(SignedWebhookView):
    """An aggregator's callback with a recharge's final status (no user: the signature is the proof).

    `X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(RECHARGE_CALLBACK_SECRET, "<t>.<raw body>")>`,
    at most 5 minutes old. A missing, wrong or stale signature is **401** and nothing is read or written.
    SUCCESS or FAILED settles a PENDING purchase; REVERSED refunds a SUCCESS one (the buyer gets the
    price back, the margins are taken back as far as balances allow). By default that work is done by
    a worker: the answer is **202** with `queued: true` and the purchase's status before it. With no
    broker, or with RECHARGE_CALLBACK_APPLY=request, it is done in the request: **200**, `applied:
    true`, the new status. The same callback again, or news the purchase already reflects, is **200**
    with `applied: false`. A final status contradicting the purchase's (FAILED for a SUCCESS purchase,
    say) is **409** `callback_conflict` and changes nothing (one a worker finds only under the lock, the
    purchase settled meanwhile, is logged at ERROR); an unknown reference is **404**; a malformed body
    **400**. When the callback is applied in the request, any other 4xx or a 5xx (a **503** `try_again`
    when the wallets' locks are busy) means nothing was applied: send it again (the same callback is
    safe to repeat); the purchase's status check settles it anyway. Every refusal is logged."""

    @swagger_auto_schema(
        operation_id="purchases_operator_callback",
        tags=["purchases"],
        security=[],
        request_body=OperatorCallbackSerializer,
        manual_parameters=[
            openapi.Parameter(
                SIGNATURE_HEADER,
                openapi.IN_HEADER,
                type=openapi.TYPE_STRING,
                required=True,
                description="`t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.<raw body>'>`",
            )
        ],
        responses={
            200: OperatorCallbackResultSerializer,
            202: OperatorCallbackResultSerializer,
            400: "Malformed body (`invalid_payload`, or a field error).",
            401: "`invalid_signature` or `stale_signature`: nothing was read.",
            404: "Unknown gateway or reference.",
            409: "`callback_conflict`: the purchase is already final with another status.",
            503: "Applied in the request (no broker, or RECHARGE_CALLBACK_APPLY=request) and the wallets' "
            "locks were busy, or the database is unavailable: nothing was applied; send it again.",
        },
    )
    def post(self, request, gateway):
        return super().post(request, gateway=gateway)

    def check_sender(self, *, gateway):
        if not gateway or gateway != gateways.get_gateway().callback_name:
            raise NotFound("No such gateway.")

    def get_secrets(self, *, gateway):
        return gateways.callback_secrets()

    def handle_event(self, *, payload, gateway):
        serializer = OperatorCallbackSerializer(data=payload)
        try:
            serializer.is_valid(raise_exception=True)
            outcome = services.receive_operator_callback(**serializer.validated_data)
        except Exception as refusal:
            code = getattr(refusal, "code", None) or type(refusal).__name__
            logger.warning("%s callback refused: %s %s", gateway, code, payload.get("reference"))
            raise
        if not (outcome.applied or outcome.queued):
            logger.info("%s callback for %s changed nothing (replay)", gateway, payload.get("reference"))
        body = {
            "purchase_id": outcome.purchase.pk,
            "status": outcome.purchase.status,
            "applied": outcome.applied,
            "queued": outcome.queued,
        }
        return Response(body, status=202 if outcome.queued else 200)
