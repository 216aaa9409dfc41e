from django.db import models

from core.phone import validate_region


class Provider(models.Model):
    """A telecom operator (Airtel, Jio, Vi, BSNL, ...)."""

    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=100)
    country = models.CharField(
        max_length=2,
        default="IN",
        validators=[validate_region],
        help_text="ISO country code (e.g. IN) of the numbers this operator serves: a recharge number must "
        "be a valid mobile number of this country.",
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class RechargePlan(models.Model):
    """A plan an operator sells (the recharge business's `Rechargeplan`). Retired, never deleted, once sold."""

    class PlanType(models.TextChoices):
        PREPAID = "PREPAID", "Prepaid"
        POSTPAID = "POSTPAID", "Postpaid"
        DATA = "DATA", "Data add-on"
        TOPUP = "TOPUP", "Talktime top-up"
        ISD = "ISD", "International"
        ROAMING = "ROAMING", "Roaming"

    class Circle(models.TextChoices):
        ALL = "ALL", "All circles"
        AP = "AP", "Andhra Pradesh & Telangana"
        AS = "AS", "Assam"
        BR = "BR", "Bihar & Jharkhand"
        DL = "DL", "Delhi NCR"
        GJ = "GJ", "Gujarat"
        HR = "HR", "Haryana"
        KA = "KA", "Karnataka"
        KL = "KL", "Kerala"
        KO = "KO", "Kolkata"
        MH = "MH", "Maharashtra & Goa"
        MP = "MP", "Madhya Pradesh & Chhattisgarh"
        MU = "MU", "Mumbai"
        OR = "OR", "Odisha"
        PB = "PB", "Punjab"
        RJ = "RJ", "Rajasthan"
        TN = "TN", "Tamil Nadu"
        UE = "UE", "Uttar Pradesh (East)"
        UW = "UW", "Uttar Pradesh (West)"
        WB = "WB", "West Bengal"

    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="plans")
    code = models.SlugField(max_length=64, unique=True, help_text="Stable catalogue key, used by populate_plans.")
    circle = models.CharField(max_length=3, choices=Circle.choices, default=Circle.ALL)
    plan_type = models.CharField(max_length=10, choices=PlanType.choices, default=PlanType.PREPAID)
    amount = models.DecimalField(max_digits=10, decimal_places=2)
    validity_days = models.PositiveIntegerField(null=True, blank=True)
    data = models.CharField(max_length=64, blank=True, default="", help_text='e.g. "1.5 GB/day"')
    talktime = models.CharField(max_length=64, blank=True, default="", help_text='e.g. "Unlimited"')
    sms = models.CharField(max_length=64, blank=True, default="", help_text='e.g. "100/day"')
    description = models.CharField(max_length=500, blank=True, default="")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider__name", "amount", "id"]
        constraints = [models.CheckConstraint(condition=models.Q(amount__gt=0), name="plan_amount_positive")]
        indexes = [
            models.Index(fields=["is_active", "provider", "plan_type", "amount"], name="plan_catalogue"),
            models.Index(fields=["circle", "amount"], name="plan_circle_amount"),
            models.Index(fields=["validity_days"], name="plan_validity"),
        ]

    def __str__(self):
        return f"{self.provider} {self.get_plan_type_display()} Rs {self.amount}"
