from decimal import Decimal

from django.contrib.auth.models import AbstractUser
from django.contrib.auth.models import UserManager as DjangoUserManager
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.db.models import F, Q
from django.db.models.functions import Lower

from core.roles import KycLevel, UserType


class UserManager(DjangoUserManager):
    def create_superuser(self, username, email=None, password=None, **extra_fields):
        extra_fields.setdefault("user_type", UserType.ADMIN)
        return super().create_superuser(username, email, password, **extra_fields)


class User(AbstractUser):
    """A person with a role. Every user has exactly one wallet, opened in the same transaction by the
    ledger when the user is created (post_save, or `users_created` for a bulk insert)."""

    email = models.EmailField("email address", max_length=254, null=True, blank=True)
    phone_number = models.CharField(
        max_length=16, null=True, blank=True, db_index=True, help_text="E.164, e.g. +919999999999"
    )
    # A number identifies the account (OTP login, payments by phone) only once proved: by the account's
    # own OTP, or vouched for by an admin who set it. Unverified, it is a claim that blocks nobody.
    phone_verified = models.BooleanField(
        default=False, help_text="Proved by the account's own OTP or set by an admin; only then does it identify it."
    )
    user_type = models.PositiveSmallIntegerField(choices=UserType.choices, default=UserType.CLIENT, db_index=True)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="children",
        help_text="The distributor a retailer belongs to.",
    )
    kyc_level = models.PositiveSmallIntegerField(
        "KYC level",
        choices=KycLevel.choices,
        default=KycLevel.MINIMUM,
        help_text="Identity verification done; a client wallet's limits depend on it (set by an admin).",
    )
    updated_at = models.DateTimeField(auto_now=True)
    # Carried in every token issued to this account and compared on each request and refresh: a bump
    # (logout, password change or reset, deactivation, role change) cuts every earlier token off.
    token_version = models.PositiveIntegerField(default=0, editable=False)
    # Who took the account out of service: a distributor may lift only its own deactivation, an
    # admin's stands until an admin lifts it. Cleared on re-activation.
    deactivated_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    deactivated_by_role = models.PositiveSmallIntegerField(
        choices=UserType.choices, null=True, blank=True, editable=False
    )

    objects = UserManager()

    REQUIRED_FIELDS = ["email"]

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(Lower("email"), name="user_email_unique_ci"),
            models.CheckConstraint(
                condition=models.Q(user_type__in=[t.value for t in UserType]), name="user_type_valid"
            ),
            models.UniqueConstraint(
                fields=["phone_number"], condition=models.Q(phone_verified=True), name="user_verified_phone_unique"
            ),
        ]

    def __str__(self):
        return self.username

    def normalize_identity(self):
        """Email lower-cased and trimmed; a blank email or phone is NULL (blank strings would
        collide under the unique constraints). save() calls it; bulk_create, which skips save(), too."""
        self.email = self.email.strip().lower() or None if self.email else None
        self.phone_number = self.phone_number or None
        if self.phone_number is None:
            self.phone_verified = False

    def set_password(self, raw_password):
        # Every path that changes a password (the API, the Django admin, `changepassword`) ends here:
        # the save that stores the new password also cuts off the tokens issued before it.
        super().set_password(raw_password)
        self._revoke_tokens_on_save = not self._state.adding

    def bump_token_version(self):
        """Invalidate every token issued so far (one UPDATE, so concurrent bumps never cancel out)."""
        type(self).objects.filter(pk=self.pk).update(token_version=F("token_version") + 1)
        self.refresh_from_db(fields=["token_version"])

    def save(self, *args, **kwargs):
        self.normalize_identity()
        creating = self._state.adding
        if not creating:
            # token_version moves only through bump_token_version: saving an object loaded before a
            # logout must not write the older version back and revive the tokens it revoked.
            fields = kwargs.get("update_fields")
            if fields is None:
                fields = [field.name for field in self._meta.concrete_fields if not field.primary_key]
            kwargs["update_fields"] = [name for name in fields if name != "token_version"]
        with transaction.atomic():
            # Creating a user sends post_save inside this transaction: the ledger opens its wallet
            # there (wallet.apps), so the user never exists without one.
            super().save(*args, **kwargs)
            if not creating and getattr(self, "_revoke_tokens_on_save", False):
                self.bump_token_version()
        self._revoke_tokens_on_save = False


class OneTimePassword(models.Model):
    """A login code sent by SMS. Only its HMAC is stored; it is consumed by one conditional UPDATE."""

    phone_number = models.CharField(max_length=16, db_index=True)
    code_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    expires_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0)
    consumed_at = models.DateTimeField(null=True, blank=True)
    requested_from = models.GenericIPAddressField(null=True, blank=True)
    # Issued while its phone is guarded: only the address that asked for it may try it, and only once.
    bound_to_address = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["phone_number", "-created_at"], name="otp_phone_recent")]

    def __str__(self):
        return f"OTP for {self.phone_number} at {self.created_at:%Y-%m-%d %H:%M:%S}"


class OtpPhoneGuard(models.Model):
    """Wrong codes tried for one phone in its current 24-hour window (accounts.otp explains the modes).

    Past the daily budget the phone is guarded until the window ends: codes are bound to the address
    that asked for them and allow one try, and the phone gets a limited number of them."""

    phone_number = models.CharField(max_length=16, unique=True)
    failed_count = models.PositiveIntegerField(default=0, help_text="Wrong codes tried in this window.")
    window_started_at = models.DateTimeField()
    guarded_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "OTP phone guard"

    def __str__(self):
        return self.phone_number


class UserMargin(models.Model):
    """The percentage of each recharge a distributor or retailer earns back (accounts.margins)."""

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="margin")
    margin_percentage = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))],
    )
    set_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["user_id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(margin_percentage__gte=0) & Q(margin_percentage__lte=100), name="margin_between_0_and_100"
            )
        ]

    def __str__(self):
        return f"{self.user}: {self.margin_percentage}%"
