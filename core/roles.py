from django.db import models


class UserType(models.IntegerChoices):
    """The four roles of the product, stored as integers (an IntEnum)."""

    ADMIN = 1, "Admin"
    DISTRIBUTOR = 2, "Distributor"
    RETAILER = 3, "Retailer"
    CLIENT = 4, "Client"


class KycLevel(models.IntegerChoices):
    """How far a user's identity has been verified (India's prepaid instrument rules are the model):
    a wallet's limits depend on it (wallet/limits.py)."""

    MINIMUM = 1, "Minimum KYC"
    FULL = 2, "Full KYC"
