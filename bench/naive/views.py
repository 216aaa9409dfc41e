"""The naive views: what the two product descriptions' code does, written plainly. Each money
view locks the wallets with select_for_update() inside transaction.atomic(), updates the balances,
and writes its transaction rows; no idempotency, no journal invariants."""

from django.db import transaction
from rest_framework import generics, status
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from bench.naive.models import Transaction, User, Wallet
from bench.naive.serializers import (
    AddToWalletSerializer,
    BalanceSerializer,
    TransactionSerializer,
    TransferSerializer,
    WalletSerializer,
)


class IsAdminUserType(BasePermission):
    def has_permission(self, request, view):
        return request.user.is_authenticated and request.user.user_type == User.ADMIN


class BalanceView(APIView):
    def get(self, request):
        return Response(BalanceSerializer(request.user.wallet).data)


class TransferView(APIView):
    def post(self, request):
        serializer = TransferSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        receiver = serializer.validated_data["to_phone_number"]
        amount = serializer.validated_data["amount"]
        remarks = serializer.validated_data["remarks"]
        if receiver == request.user:
            return Response({"error": "Cannot transfer to yourself."}, status=status.HTTP_400_BAD_REQUEST)
        with transaction.atomic():
            sender_wallet = Wallet.objects.select_for_update().get(user=request.user)
            receiver_wallet = Wallet.objects.select_for_update().get(user=receiver)
            if sender_wallet.balance < amount:
                return Response({"error": "Insufficient funds."}, status=status.HTTP_400_BAD_REQUEST)
            sender_wallet.balance -= amount
            sender_wallet.save()
            receiver_wallet.balance += amount
            receiver_wallet.save()
            sent = Transaction.objects.create(
                wallet=sender_wallet,
                sender=request.user,
                receiver=receiver,
                amount=amount,
                transaction_type=Transaction.TRANSFER,
                remarks=remarks,
            )
            Transaction.objects.create(
                wallet=receiver_wallet,
                sender=request.user,
                receiver=receiver,
                amount=amount,
                transaction_type=Transaction.TRANSFER,
                remarks=remarks,
            )
        return Response(TransactionSerializer(sent).data, status=status.HTTP_201_CREATED)


class WalletListView(generics.ListAPIView):
    serializer_class = WalletSerializer

    def get_queryset(self):
        user = self.request.user
        wallets = Wallet.objects.select_related("user").order_by("id")
        if user.user_type == User.ADMIN:
            return wallets
        if user.user_type == User.DISTRIBUTOR:
            return wallets.filter(user__in=[user, *user.retailers.all()])
        return wallets.filter(user=user)


class AddToWalletView(APIView):
    permission_classes = [IsAdminUserType]

    def post(self, request):
        serializer = AddToWalletSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            user = User.objects.get(email=serializer.validated_data["user_email"])
        except User.DoesNotExist:
            return Response({"error": "User not found."}, status=status.HTTP_404_NOT_FOUND)
        amount = serializer.validated_data["amount"]
        with transaction.atomic():
            wallet = Wallet.objects.select_for_update().get(user=user)
            wallet.balance += amount
            wallet.save()
            Transaction.objects.create(
                wallet=wallet,
                receiver=user,
                amount=amount,
                transaction_type=Transaction.CREDIT,
                remarks=serializer.validated_data["description"],
            )
        return Response(
            {"message": "Wallet funded successfully", "balance": str(wallet.balance)}, status=status.HTTP_201_CREATED
        )


class TransactionListView(generics.ListAPIView):
    serializer_class = TransactionSerializer

    def get_queryset(self):
        return (
            Transaction.objects.filter(wallet__user=self.request.user)
            .select_related("sender", "receiver")
            .order_by("-timestamp")
        )
