"""The two product descriptions' tables, as their READMEs describe them: a user with a role and a
phone number, a wallet with a balance, and a transaction log (one row per wallet touched)."""

from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    ADMIN, DISTRIBUTOR, RETAILER, CLIENT = 1, 2, 3, 4
    USER_TYPES = [(ADMIN, "Admin"), (DISTRIBUTOR, "Distributor"), (RETAILER, "Retailer"), (CLIENT, "Client")]

    phone_number = models.CharField(max_length=16, unique=True, null=True, blank=True)
    user_type = models.PositiveSmallIntegerField(choices=USER_TYPES, default=CLIENT)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retailers")


class Wallet(models.Model):
    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="wallet")
    balance = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.user} wallet"


class Transaction(models.Model):
    CREDIT, DEBIT, TRANSFER = "CREDIT", "DEBIT", "TRANSFER"
    TYPES = [(CREDIT, "Credit"), (DEBIT, "Debit"), (TRANSFER, "Transfer")]

    wallet = models.ForeignKey(Wallet, on_delete=models.CASCADE, related_name="transactions")
    sender = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    receiver = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    transaction_type = models.CharField(max_length=10, choices=TYPES)
    remarks = models.CharField(max_length=255, blank=True)
    timestamp = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-timestamp"]
        # A wallet's history, newest first: what any developer adds once the list gets long.
        indexes = [models.Index(fields=["wallet", "-timestamp"])]

    def __str__(self):
        return f"{self.transaction_type} {self.amount}"
