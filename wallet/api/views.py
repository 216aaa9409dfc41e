"""Wallet endpoints (api-contract.md, Wallet). Thin: parse, call one service or selector, render.

Money-moving POSTs run under `@idempotent(atomic=True)`: the transfer and the stored answer to its
Idempotency-Key commit together.
"""

from django.conf import settings
from django.utils.decorators import method_decorator
from django_filters.rest_framework import DjangoFilterBackend
from drf_yasg.utils import swagger_auto_schema
from rest_framework import generics, status
from rest_framework.filters import SearchFilter
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import margins
from core.filters import FiltersOnlyWhenAsked
from core.idempotency import HEADER, IDEMPOTENCY_KEY_PARAMETER, REQUIRED_IDEMPOTENCY_KEY_PARAMETER, idempotent
from core.permissions import IsAdmin, IsAdminOrDistributor
from wallet import selectors, services
from wallet.api.filters import AliasOrderingFilter, TransferFilter, WalletFilter
from wallet.api.pagination import TransferPagination
from wallet.api.serializers import (
    AdminFundingSerializer,
    AdminMoneyMovedSerializer,
    AmountSerializer,
    BalanceWithLimitsSerializer,
    MarginSerializer,
    MoneyMovedSerializer,
    PayoutInputSerializer,
    PayoutMadeSerializer,
    PayoutRefusedSerializer,
    PayoutRequestSerializer,
    SetMarginSerializer,
    TransferInputSerializer,
    TransferSerializer,
    WalletSerializer,
)

TAGS = ["wallet"]
PARTY_SEARCH = [
    "from_wallet__user__username",
    "to_wallet__user__username",
    "from_wallet__user__phone_number",
    "to_wallet__user__phone_number",
]


class SelfTopUpEnabled(BasePermission):
    message = "Self top-up is switched off on this deployment (WALLET_SELF_TOPUP_ENABLED)."
    code = "self_topup_disabled"

    def has_permission(self, request, view):
        return settings.WALLET_SELF_TOPUP_ENABLED


def _moved(transfer, *, wallet):
    """The caller's answer: the transfer and `wallet` (a wallet the service just locked and updated)."""
    return {
        "transfer": transfer,
        "user": wallet.user.username,
        "balance": wallet.balance,
        "held": wallet.held,
        "available": wallet.available,
    }


def _render(request, payload, serializer_class=MoneyMovedSerializer):
    body = serializer_class(payload, context={"request": request, "viewer": request.user}).data
    return Response(body, status=status.HTTP_201_CREATED)


# --- reads ----------------------------------------------------------------------------------


class BalanceView(APIView):
    @swagger_auto_schema(operation_id="wallet_balance", tags=TAGS, responses={200: BalanceWithLimitsSerializer})
    def get(self, request):
        """The caller's balance, held amount and available amount, and its wallet's limits with what it
        may still receive (`limits`: balance and monthly load headroom; null where no limit applies)."""
        wallet = selectors.own_wallet(user=request.user)
        room = selectors.load_headroom(wallet=wallet, user=request.user)
        return Response(BalanceWithLimitsSerializer(wallet, context={"headroom": room}).data)


@method_decorator(name="get", decorator=swagger_auto_schema(operation_id="wallet_wallets_list", tags=TAGS))
class WalletListView(FiltersOnlyWhenAsked, generics.ListAPIView):
    """Wallets in the caller's scope (admin: all users'; distributor: itself and its retailers)."""

    serializer_class = WalletSerializer
    filterset_class = WalletFilter
    search_fields = ["user__username", "user__email", "user__phone_number"]
    ordering_fields = ["id", "balance", "created_at", "updated_at"]
    ordering = ["id"]

    def get_queryset(self):
        return selectors.wallets_in_scope(user=self.request.user)

    def list(self, request, *args, **kwargs):
        # A retailer's or client's scope is its own wallet: asked for no filter, the list is that one
        # wallet, the one authentication loaded (as every read of it: as of the request's start), paged
        # as a list of one. The COUNT and the page's query, and compiling them, were half its CPU.
        wallet = selectors.own_wallet_if_single_scope(user=request.user)
        if wallet is None or not self.asks_only_for_a_page():
            return super().list(request, *args, **kwargs)
        page = self.paginate_queryset([wallet])
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


@method_decorator(
    name="get",
    decorator=swagger_auto_schema(operation_id="wallet_wallets_read", tags=TAGS, responses={200: WalletSerializer}),
)
class WalletDetailView(generics.RetrieveAPIView):
    """One wallet in the caller's scope; any other is 404."""

    serializer_class = WalletSerializer

    def get_queryset(self):
        return selectors.wallets_in_scope(user=self.request.user)


class _TransferListBase(FiltersOnlyWhenAsked, generics.ListAPIView):
    serializer_class = TransferSerializer
    pagination_class = TransferPagination
    filterset_class = TransferFilter
    filter_backends = [DjangoFilterBackend, SearchFilter, AliasOrderingFilter]
    search_fields = PARTY_SEARCH
    ordering_fields = ["created_at", "amount"]
    ordering_aliases = {"timestamp": "created_at"}
    ordering = ["-created_at", "-id"]

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "viewer": self.request.user}


@method_decorator(name="get", decorator=swagger_auto_schema(operation_id="wallet_transactions_list", tags=TAGS))
class TransactionListView(_TransferListBase):
    """Transfers touching the caller's scope, newest first. Filters: kind, status, created_after /
    created_before (or date_from / date_to), amount_min / amount_max, sender, receiver; `search`
    matches sender or receiver username or phone; `ordering` created_at or amount."""

    def get_queryset(self):
        return selectors.transfers_in_scope(user=self.request.user)

    def keyset_wallet_id(self):
        """The one wallet a retailer's or client's history is about (TransferPagination's fast path)."""
        return selectors.own_wallet_id_if_single_scope(user=self.request.user)


@method_decorator(name="get", decorator=swagger_auto_schema(operation_id="wallet_admin_transactions_list", tags=TAGS))
class AdminTransactionListView(_TransferListBase):
    """Every transfer (admin). `search` matches sender, receiver (username, phone or system wallet)
    and kind; `kind` / `transaction_type` filter; `ordering` created_at (or `timestamp`) / amount."""

    permission_classes = [IsAdmin]
    search_fields = [*PARTY_SEARCH, "from_wallet__system_code", "to_wallet__system_code", "=kind"]

    def get_queryset(self):
        return selectors.all_transfers()


@method_decorator(
    name="get",
    decorator=swagger_auto_schema(
        operation_id="wallet_transactions_read", tags=TAGS, responses={200: TransferSerializer}
    ),
)
class TransactionDetailView(generics.RetrieveAPIView):
    """One transfer touching the caller's scope; any other is 404."""

    serializer_class = TransferSerializer

    def get_queryset(self):
        return selectors.transfers_in_scope(user=self.request.user)

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "viewer": self.request.user}


# Margins are the role hierarchy's (accounts.margins); their endpoints stay at the wallet's paths.


@method_decorator(name="get", decorator=swagger_auto_schema(operation_id="wallet_margins_list", tags=TAGS))
class MarginListView(generics.ListAPIView):
    """Margins in the caller's scope."""

    serializer_class = MarginSerializer
    search_fields = ["user__username", "user__email", "user__phone_number"]
    ordering_fields = ["margin_percentage", "updated_at", "user_id"]
    ordering = ["user_id"]

    def get_queryset(self):
        return margins.margins_in_scope(user=self.request.user)


# --- writes ---------------------------------------------------------------------------------


def _money_schema(operation_id, request_body, response=MoneyMovedSerializer):
    return swagger_auto_schema(
        operation_id=operation_id,
        tags=TAGS,
        request_body=request_body,
        responses={201: response},
        manual_parameters=[IDEMPOTENCY_KEY_PARAMETER],
    )


class _SelfMoneyView(APIView):
    """The caller's own money in or out: CREDIT (credit/) or DEBIT (debit/), against TREASURY."""

    def operation(self, **kwargs):
        raise NotImplementedError

    def post(self, request):
        data = _valid(AmountSerializer, request)
        transfer = self.operation(
            user=request.user,
            amount=data["amount"],
            remarks=data["remarks"],
            idempotency_key=request.headers.get(HEADER),
        )
        own = transfer.to_wallet if transfer.to_wallet.user_id == request.user.pk else transfer.from_wallet
        return _render(request, _moved(transfer, wallet=own))


class CreditView(_SelfMoneyView):
    permission_classes = [IsAuthenticated, SelfTopUpEnabled]
    throttle_scope = "money"

    def operation(self, **kwargs):
        return services.credit_wallet(**kwargs)

    @_money_schema("wallet_credit", AmountSerializer)
    @idempotent(atomic=True)
    def post(self, request):
        """Self top-up (CREDIT, from TREASURY). 403 `self_topup_disabled` when switched off."""
        return super().post(request)


class DebitView(_SelfMoneyView):
    throttle_scope = "money"

    def operation(self, **kwargs):
        return services.debit_wallet(**kwargs)

    @_money_schema("wallet_debit", AmountSerializer)
    @idempotent(atomic=True)
    def post(self, request):
        """Self debit (DEBIT, to TREASURY). 400 `insufficient_funds` when available < amount."""
        return super().post(request)


class TransferView(APIView):
    throttle_scope = "money"

    @_money_schema("wallet_transfer", TransferInputSerializer)
    @idempotent(atomic=True)
    def post(self, request):
        """Pay another account, named by exactly one of to_phone_number, to_user_id, to_email.
        404 `user_not_found`, 400 `same_wallet`, `wallet_inactive`, `insufficient_funds`."""
        data = _valid(TransferInputSerializer, request)
        transfer = services.transfer_funds(
            sender=request.user,
            receiver=data["receiver"],
            amount=data["amount"],
            remarks=data["remarks"],
            idempotency_key=request.headers.get(HEADER),
        )
        return _render(request, _moved(transfer, wallet=transfer.from_wallet))


class _AdminFundingView(APIView):
    permission_classes = [IsAdmin]
    throttle_scope = "money"
    operation = None  # services.fund_wallet or services.defund_wallet
    message = ""

    def post(self, request):
        data = _valid(AdminFundingSerializer, request)
        transfer = type(self).operation(
            user=data["target"],
            amount=data["amount"],
            remarks=data["description"],
            initiated_by=request.user,
            idempotency_key=request.headers.get(HEADER),
        )
        target_wallet = transfer.to_wallet if transfer.kind == transfer.Kind.FUND else transfer.from_wallet
        # The admin's own wallet, as authentication loaded it (no query): funding moves money between
        # the treasury and the target, never through the admin's wallet.
        payload = _moved(transfer, wallet=selectors.own_wallet(user=request.user))
        payload.update(message=self.message, wallet=target_wallet)
        return _render(request, payload, AdminMoneyMovedSerializer)


class AddToWalletView(_AdminFundingView):
    operation = staticmethod(services.fund_wallet)
    message = "Wallet funded successfully"

    @_money_schema("wallet_add_to_wallet", AdminFundingSerializer, AdminMoneyMovedSerializer)
    @idempotent(atomic=True)
    def post(self, request):
        """Admin: add money to an account (FUND, from TREASURY)."""
        return super().post(request)


class DebitFromWalletView(_AdminFundingView):
    operation = staticmethod(services.defund_wallet)
    message = "Wallet debited successfully"

    @_money_schema("wallet_debit_from_wallet", AdminFundingSerializer, AdminMoneyMovedSerializer)
    @idempotent(atomic=True)
    def post(self, request):
        """Admin: take money out of an account (DEFUND, to TREASURY). 400 `insufficient_funds`."""
        return super().post(request)


class PayoutView(APIView):
    permission_classes = [IsAdminOrDistributor]

    @swagger_auto_schema(
        operation_id="wallet_payouts_create",
        tags=TAGS,
        request_body=PayoutRequestSerializer,
        responses={201: PayoutMadeSerializer, 400: PayoutRefusedSerializer},
        manual_parameters=[REQUIRED_IDEMPOTENCY_KEY_PARAMETER],
    )
    @idempotent(atomic=True, required=True)
    def post(self, request):
        """Bulk payout, all or nothing. A distributor pays its own retailers from its wallet
        (TRANSFER rows); an admin pays any account from the treasury (FUND rows). One journal row
        per line. Any bad line: 400 `invalid_payout_lines` listing each bad line with its code, and
        nothing is paid. Also 400 `invalid_payout_size`, `insufficient_funds`,
        `idempotency_key_required`."""
        data = _valid(PayoutInputSerializer, request)
        payout = services.pay_out(
            payer=request.user,
            lines=data["lines"],
            remarks=data["remarks"],
            idempotency_key=request.headers.get(HEADER),
        )
        source = payout.source_wallet
        wallet = source if source.user_id == request.user.pk else selectors.wallet_of(user=request.user)
        return _render(request, {"payout": payout, "wallet": wallet}, PayoutMadeSerializer)


class SetMarginView(APIView):
    permission_classes = [IsAdminOrDistributor]

    @swagger_auto_schema(
        operation_id="wallet_set_margin", tags=TAGS, request_body=SetMarginSerializer, responses={200: MarginSerializer}
    )
    def post(self, request):
        """Admin: anyone's margin. Distributor: its own retailers' only (others 404), never above
        its own margin (400 `margin_above_own`). A new distributor's own margin is 0.00 until an
        admin sets it, so until then it can give its retailers no margin above 0.00."""
        data = _valid(SetMarginSerializer, request)
        margin = margins.set_margin(
            user=data["target"], margin_percentage=data["margin_percentage"], set_by=request.user
        )
        return Response(MarginSerializer(margin).data)


def _valid(serializer_class, request):
    serializer = serializer_class(data=request.data, context={"request": request})
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
