from drf_yasg.utils import swagger_auto_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.idempotency import HEADER, IDEMPOTENCY_KEY_PARAMETER, idempotent
from purchases import selectors, services
from purchases.api.filters import PurchaseFilter
from purchases.api.serializers import PurchaseInputSerializer, PurchaseResultSerializer, PurchaseSerializer


class PurchaseCreateView(APIView):
    """Recharge a mobile number with a plan, paid from the caller's wallet.

    The price is held, the operator gateway is called, then the money is posted (and the margins
    paid) or the hold is released. `status` is SUCCESS, FAILED (nothing was charged) or PENDING
    (the price stays held until the operator confirms; see `settle_pending_purchases`).
    `mobile_number` must be a valid mobile number of the plan's operator's country, written with
    digits, spaces, + and - only: otherwise 400 `invalid_mobile_number` and nothing is held."""

    @swagger_auto_schema(
        operation_id="purchases_create",
        tags=["purchases"],
        request_body=PurchaseInputSerializer,
        manual_parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={201: PurchaseResultSerializer},
    )
    @idempotent(atomic=False)
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
        return Response(body, status=status.HTTP_201_CREATED)


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

    @swagger_auto_schema(operation_id="purchases_history", tags=["purchases"])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class PurchaseDetailView(APIView):
    """One purchase in the caller's scope (404 outside it)."""

    @swagger_auto_schema(operation_id="purchases_read", tags=["purchases"], responses={200: PurchaseSerializer})
    def get(self, request, pk):
        return Response(PurchaseSerializer(selectors.purchase_for(user=request.user, pk=pk)).data)
