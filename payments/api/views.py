"""Top-up endpoints (README, "How a mobile client adds money"). Thin: parse, one service call, render."""

import django_filters
from django.conf import settings
from drf_yasg import openapi
from drf_yasg.utils import swagger_auto_schema
from rest_framework import generics, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import NotFound
from core.filters import AnyCaseChoiceFilter
from core.idempotency import HEADER, IDEMPOTENCY_KEY_PARAMETER, idempotent
from core.schema import error_response
from core.signatures import SignedWebhookView
from payments import sandbox, selectors, services
from payments.api.serializers import (
    SandboxPaymentSerializer,
    SandboxPaySerializer,
    TopUpInputSerializer,
    TopUpSerializer,
    WebhookAnswerSerializer,
    WebhookBodySerializer,
)
from payments.models import TopUp
from payments.providers import get_provider

TAGS = ["top-ups"]


class TopUpFilter(django_filters.FilterSet):
    status = AnyCaseChoiceFilter(choices=TopUp.Status.choices, label="Top-up status, any case.")

    class Meta:
        model = TopUp
        fields = ["status"]


class TopUpListCreateView(generics.ListAPIView):
    """The caller's own top-ups, newest first; POST opens a new one."""

    serializer_class = TopUpSerializer
    filterset_class = TopUpFilter
    ordering_fields = ["created_at", "amount"]
    ordering = ["-created_at", "-id"]

    def get_queryset(self):
        return selectors.top_ups_of(user=self.request.user)

    @swagger_auto_schema(operation_id="wallet_topups_list", tags=TAGS)
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @swagger_auto_schema(
        operation_id="wallet_topups_create",
        tags=TAGS,
        request_body=TopUpInputSerializer,
        manual_parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={201: TopUpSerializer},
    )
    @idempotent(atomic=False)
    def post(self, request):
        """Open a payment of `amount` at the payment provider. 201 with the intent: pay at
        `payment_url` (or `upi_intent`) while `status` is PENDING; the wallet is credited when the
        provider confirms (its webhook, or the status check), and the intent then reads SUCCEEDED.
        FAILED: the provider refused it (`failure_reason`). 400 `invalid_amount`,
        `balance_limit_exceeded`, `monthly_load_limit_exceeded`."""
        serializer = TopUpInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        top_up = services.create_top_up(
            user=request.user, amount=serializer.validated_data["amount"], idempotency_key=request.headers.get(HEADER)
        )
        return Response(TopUpSerializer(top_up).data, status=status.HTTP_201_CREATED)


class TopUpDetailView(APIView):
    @swagger_auto_schema(operation_id="wallet_topups_read", tags=TAGS, responses={200: TopUpSerializer})
    def get(self, request, pk):
        """One of the caller's top-ups (anyone else's is 404): poll it until it leaves PENDING."""
        return Response(TopUpSerializer(selectors.top_up_of(user=request.user, pk=pk)).data)


class TopUpWebhookView(SignedWebhookView):
    """The payment provider's webhook: `X-Signature: t=<unix>,v1=<HMAC-SHA256(PAYMENT_WEBHOOK_SECRET,
    "<t>.<raw body>")>`. 200 once applied or for a replay (`applied` false, nothing changes); 401
    `invalid_signature` / `stale_signature`; 400 `invalid_payload`, `payment_mismatch` (amount,
    currency or merchant reference differ from the intent's: nothing applied); 404 `unknown_intent`
    or an unknown provider."""

    def check_sender(self, *, provider):
        if provider != get_provider().code:
            raise NotFound("Unknown payment provider.")

    def get_secrets(self, *, provider):
        return settings.PAYMENT_WEBHOOK_SECRETS

    def handle_event(self, *, payload, provider):
        result = get_provider().parse_webhook(payload)
        top_up, applied = services.apply_payment_result(provider_code=provider, result=result)
        return Response({"received": True, "applied": applied, "status": top_up.status})

    @swagger_auto_schema(
        operation_id="wallet_topups_webhook",
        tags=TAGS,
        security=[],
        request_body=WebhookBodySerializer,
        manual_parameters=[
            openapi.Parameter(
                "X-Signature",
                openapi.IN_HEADER,
                type=openapi.TYPE_STRING,
                required=True,
                description="t=<unix seconds>,v1=<hex HMAC-SHA256 over '<t>.<raw body>'>",
            )
        ],
        responses={200: WebhookAnswerSerializer},
    )
    def post(self, request, provider):
        return super().post(request, provider=provider)


class SandboxPaymentView(APIView):
    """The sandbox provider's payment page (only while PAYMENT_PROVIDER is the sandbox; 404 otherwise).
    Anyone holding the unguessable payment URL may pay, as on a real provider's page."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @swagger_auto_schema(
        operation_id="wallet_topups_sandbox_read", tags=TAGS, security=[], responses={200: SandboxPaymentSerializer}
    )
    def get(self, request, reference):
        """What the sandbox knows about this payment, with everything it received and sent."""
        return Response(SandboxPaymentSerializer(sandbox.payment(reference=reference)).data)

    @swagger_auto_schema(
        operation_id="wallet_topups_sandbox_pay",
        tags=TAGS,
        security=[],
        request_body=SandboxPaySerializer,
        responses={
            200: SandboxPaymentSerializer,
            409: error_response("The payment was already completed or has expired."),
        },
    )
    def post(self, request, reference):
        """Development: complete the payment as the payer would. The sandbox then sends its signed
        webhook to PAYMENT_SANDBOX_WEBHOOK_URL (except for `succeeded_silently`). 409 `payment_closed`
        if it was already completed or has expired."""
        sandbox.ensure_enabled()
        serializer = SandboxPaySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        found = sandbox.complete_payment(reference=reference, outcome=serializer.validated_data["outcome"])
        return Response(SandboxPaymentSerializer(found).data)
