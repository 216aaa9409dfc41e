from django.db import models


class UserType(models.IntegerChoices):
    """The four roles of the product, stored as integers (an IntEnum)."""

    ADMIN = 1, "Admin"
    DISTRIBUTOR = 2, "Distributor"
    RETAILER = 3, "Retailer"
    CLIENT = 4, "Client"
