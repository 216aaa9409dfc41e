"""Writes of the accounts app: users, passwords and tokens (one-time passwords: accounts.otp).

Phone numbers (security issue 12.1): a number identifies an account (OTP login, payments and admin
lookups by phone) only when verified, and it is unique among verified accounts only. It is verified
by the account's own OTP proof (accounts.otp) or by an admin who sets it (the admin API, the Django
admin, `assign_phone_numbers`): an admin vouches for the number and the unverified claims of others
on it are released. A number from public signup or from a distributor is stored unverified: it blocks
nobody and tells nobody that the number is registered.

Every function takes keyword arguments only and raises a `DomainError` subclass on a refusal, so
views, the Django admin, management commands and tests all share one set of rules.

Roles and the Django admin: an ADMIN (however created: `createsuperuser`, the admin API, the
Django admin) is also `is_staff` and `is_superuser`, because the product's "full system control"
includes the Django admin site; any other role has neither flag (see `apply_role_flags`).
"""

from django.conf import settings
from django.contrib.auth import authenticate, password_validation
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import update_last_login
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import status
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken

from accounts.lockout import LOCKED_MESSAGE, cool_off_seconds
from accounts.models import User
from accounts.signals import users_created
from accounts.tokens import VersionedRefreshToken, token_pair_for
from core.errors import Conflict, DomainError, NotFound
from core.roles import UserType

# --- refusals -------------------------------------------------------------------------------------


class InvalidCredentials(DomainError):
    code = "invalid_credentials"
    message = "No active account with this email and password."
    status_code = status.HTTP_401_UNAUTHORIZED


class AccountLocked(DomainError):
    code = "account_locked"
    message = LOCKED_MESSAGE
    status_code = status.HTTP_429_TOO_MANY_REQUESTS

    @property
    def retry_after(self):
        return cool_off_seconds()


class AccountInactive(DomainError):
    code = "account_inactive"
    message = "This account is deactivated."
    status_code = status.HTTP_403_FORBIDDEN


class InvalidRefreshToken(DomainError):
    code = "token_not_valid"
    message = "The refresh token is invalid, expired or already revoked."
    status_code = status.HTTP_401_UNAUTHORIZED


class WeakPassword(DomainError):
    code = "password_invalid"


class AlreadyTaken(DomainError):
    code = "already_taken"
    message = "A user with this {label} already exists."


class PhoneTaken(DomainError):
    code = "phone_taken"
    message = "This phone number is already verified by another account."
    status_code = status.HTTP_409_CONFLICT


class InvalidParent(DomainError):
    code = "invalid_parent"

    def __init__(self, message=None, *, field="parent"):
        super().__init__(message, field=field)


class OwnAccountRefused(DomainError):
    code = "own_account"
    message = "You cannot deactivate your own account or change your own role."
    status_code = status.HTTP_403_FORBIDDEN


class WrongPassword(DomainError):
    code = "wrong_password"
    message = "The current password is not correct."


class DeactivatedByAdmin(DomainError):
    code = "deactivated_by_admin"
    message = "An administrator deactivated this account; only an administrator can re-activate it."
    status_code = status.HTTP_403_FORBIDDEN


# --- users ----------------------------------------------------------------------------------------


def apply_role_flags(*, user: User) -> None:
    """ADMIN => is_staff and is_superuser (the Django admin is part of full control); others: neither."""
    is_admin = user.user_type == UserType.ADMIN
    user.is_staff = is_admin
    user.is_superuser = is_admin


def check_password_strength(*, password: str, user: User, field: str = "password") -> None:
    try:
        password_validation.validate_password(password, user)
    except DjangoValidationError as exc:
        raise WeakPassword(" ".join(exc.messages), field=field) from None


def _ensure_unique(*, user: User) -> None:
    others = User.objects.exclude(pk=user.pk) if user.pk else User.objects.all()
    # Only a verified number must be unique, and only among verified ones: an unverified number
    # checks nothing, so storing it can neither fail nor reveal that someone else holds it.
    verified_phone = user.phone_number if user.phone_number and user.phone_verified else None
    checks = (
        ("username", "username", {"username": user.username}),
        ("email", "email", {"email": user.email} if user.email else None),
        (
            "phone_number",
            "phone number",
            {"phone_number": verified_phone, "phone_verified": True} if verified_phone else None,
        ),
    )
    for field, label, lookup in checks:
        if lookup and others.filter(**lookup).exists():
            raise AlreadyTaken(field=field, label=label)


def check_parent(*, user_type: int, parent: User | None) -> None:
    if parent is None:
        return
    if user_type != UserType.RETAILER:
        raise InvalidParent("Only a retailer has a parent (its distributor).")
    if parent.user_type != UserType.DISTRIBUTOR:
        raise InvalidParent("A retailer's parent must be a distributor.")
    if not parent.is_active:
        raise InvalidParent("A retailer's parent must be an active distributor.")


def _record_activity_change(*, user: User, actor: User | None, was_active: bool) -> bool:
    """Note who took `user` out of service, or clear it on re-activation. True when deactivating.

    Only the transition counts: setting is_active=False on an account that is already inactive
    does not overwrite who deactivated it (a distributor cannot turn an admin's deactivation into
    its own and then lift it)."""
    if was_active and not user.is_active:
        user.deactivated_by = actor
        user.deactivated_by_role = actor.user_type if actor is not None else UserType.ADMIN
        return True
    if not was_active and user.is_active:
        user.deactivated_by, user.deactivated_by_role = None, None
    return False


def release_phone_claims(*, phone_number: str, keep: User | None = None) -> int:
    """Take `phone_number` off every account that holds it unverified (but `keep`): its owner has
    proved it, or an admin vouched for it. The released accounts keep everything else."""
    claims = User.objects.filter(phone_number=phone_number, phone_verified=False)
    if keep is not None and keep.pk:
        claims = claims.exclude(pk=keep.pk)
    return claims.update(phone_number=None, updated_at=timezone.now())


def _save(user: User) -> User:
    """Save after the uniqueness checks; a concurrent insert of the same email or phone is a 400 too.
    A verified number releases the unverified claims of others on it, in the same transaction."""
    user.normalize_identity()
    _ensure_unique(user=user)
    try:
        with transaction.atomic():
            if user.phone_verified:
                release_phone_claims(phone_number=user.phone_number, keep=user)
            user.save()  # creates the wallet in the same transaction when the user is new
    except IntegrityError:
        _ensure_unique(user=user)
        raise Conflict("The account could not be saved because of a concurrent change; retry.") from None
    return user


def create_user(
    *,
    username: str,
    password: str | None,
    email: str | None = None,
    user_type: int = UserType.CLIENT,
    phone_number: str | None = None,
    first_name: str = "",
    last_name: str = "",
    parent: User | None = None,
    is_active: bool = True,
    created_by: User | None = None,
    phone_verified: bool = False,
) -> User:
    """Create a user and its wallet in one transaction. `password=None` makes an OTP-only account.

    Refuses a weak password (Django's validators), a taken username/email/verified phone, and a parent
    that is not an active distributor of a retailer. `phone_verified=True` (an admin vouches for the
    number) releases others' unverified claims on it. An account created inactive counts as
    deactivated by `created_by` (an admin when not given)."""
    check_parent(user_type=user_type, parent=parent)
    user = User(
        username=username,
        email=email or None,
        user_type=user_type,
        phone_number=phone_number or None,
        first_name=first_name or "",
        last_name=last_name or "",
        parent=parent,
        is_active=is_active,
        phone_verified=phone_verified,
    )
    _record_activity_change(user=user, actor=created_by, was_active=True)
    apply_role_flags(user=user)
    if password is None:
        user.set_unusable_password()
    else:
        check_password_strength(password=password, user=user)
        user.set_password(password)
    return _save(user)


def create_users_in_bulk(*, users: list[dict], password_hash: str | None = None, batch_size=2000) -> list[User]:
    """Create many accounts and their wallets in one transaction (an import of a distributor's
    retailers, a load-test population). Each dict holds User fields (username, user_type, phone_number,
    parent...). `password_hash` (from make_password, hashed once for all) or an OTP-only account.

    Bulk: no per-row uniqueness pre-check; a duplicate username, email or phone rolls the whole
    import back with IntegrityError, and the caller learns nothing was created."""
    password = password_hash or make_password(None)
    accounts = []
    for fields in users:
        user = User(**fields)
        user.normalize_identity()
        check_parent(user_type=user.user_type, parent=user.parent)
        apply_role_flags(user=user)
        user.password = password
        accounts.append(user)
    with transaction.atomic():
        created = User.objects.bulk_create(accounts, batch_size=batch_size)
        users_created.send(sender=User, users=created)
    return created


def sign_up(*, username, email, password, phone_number=None, first_name="", last_name="") -> User:
    """Public registration: always a CLIENT, whatever the caller sent. The phone number is stored
    unverified: it identifies the account only after the account proves it by OTP."""
    return create_user(
        username=username,
        email=email,
        password=password,
        phone_number=phone_number,
        first_name=first_name,
        last_name=last_name,
        user_type=UserType.CLIENT,
    )


PROFILE_FIELDS = frozenset({"first_name", "last_name", "email", "username"})
ADMIN_EDITABLE_FIELDS = PROFILE_FIELDS | {"phone_number", "user_type", "parent", "is_active", "kyc_level"}
RETAILER_EDITABLE_FIELDS = frozenset({"first_name", "last_name", "email", "phone_number", "is_active"})


def _apply(user: User, changes: dict, allowed: frozenset) -> None:
    unknown = set(changes) - allowed
    if unknown:
        raise ValueError(f"fields not editable here: {sorted(unknown)}")
    for name, value in changes.items():
        setattr(user, name, value)


def update_profile(*, user: User, **changes) -> User:
    """A user's own profile: names, email, username. Role, parent, activity and phone stay as they are."""
    _apply(user, changes, PROFILE_FIELDS)
    return _save(user)


def update_user(*, actor: User, user: User, **changes) -> User:
    """An admin's edit: profile, phone (vouched for: verified), role, parent, is_active.

    A retailer's parent must be an active distributor; another role has no parent (leaving the
    retailer role drops it); a distributor that still has retailers cannot change role. An admin
    cannot deactivate itself or change its own role (it would lock itself out)."""
    new_type = changes.get("user_type", user.user_type)
    if actor.pk == user.pk and (new_type != user.user_type or changes.get("is_active", True) is False):
        raise OwnAccountRefused()
    if new_type != UserType.RETAILER and "parent" not in changes:
        changes["parent"] = None
    if (
        user.user_type == UserType.DISTRIBUTOR
        and new_type != UserType.DISTRIBUTOR
        and User.objects.filter(parent=user).exists()
    ):
        raise InvalidParent("This distributor still has retailers; move them first.", field="user_type")
    check_parent(user_type=new_type, parent=changes.get("parent", user.parent))
    was_active, old_type = user.is_active, user.user_type
    _apply(user, changes, ADMIN_EDITABLE_FIELDS)
    if changes.get("phone_number"):
        user.phone_verified = True  # an admin setting a number vouches for it
    apply_role_flags(user=user)
    deactivating = _record_activity_change(user=user, actor=actor, was_active=was_active)
    with transaction.atomic():
        _save(user)
        if deactivating or user.user_type != old_type:
            # A deactivated account or one whose powers changed starts again from a fresh login.
            revoke_tokens(user=user)
    return user


def save_from_admin_site(*, actor: User, user: User, was_active: bool, old_type: int | None) -> User:
    """The Django admin's save of a user whose form has already set the fields (`old_type` None: a
    new user; the form marks a number it sets as verified). The same consequences as update_user:
    role flags follow the role, a deactivation is recorded as the admin's, a verified number releases
    others' claims on it, and a deactivation or a role change cuts off every token."""
    apply_role_flags(user=user)
    deactivating = _record_activity_change(user=user, actor=actor, was_active=was_active)
    user.normalize_identity()
    with transaction.atomic():
        if user.phone_verified:
            release_phone_claims(phone_number=user.phone_number, keep=user)
        user.save()  # creates the wallet in the same transaction when the user is new
        if old_type is not None and (deactivating or user.user_type != old_type):
            revoke_tokens(user=user)
    return user


def update_retailer(*, distributor: User, retailer: User, **changes) -> User:
    """A distributor's edit of one of its own retailers (scope is checked by the selector). A number it
    sets is stored unverified; it may lift only a deactivation of its own."""
    if retailer.parent_id != distributor.pk:
        raise NotFound()
    if (
        not retailer.is_active
        and changes.get("is_active") is True
        and retailer.deactivated_by_role != UserType.DISTRIBUTOR
    ):
        # An admin's deactivation (or one of unknown origin, from before this was recorded) stands.
        raise DeactivatedByAdmin(field="is_active")
    was_active, old_phone = retailer.is_active, retailer.phone_number
    _apply(retailer, changes, RETAILER_EDITABLE_FIELDS)
    if retailer.phone_number != old_phone:
        retailer.phone_verified = False  # a distributor does not vouch: the retailer proves it by OTP
    deactivating = _record_activity_change(user=retailer, actor=distributor, was_active=was_active)
    with transaction.atomic():
        _save(retailer)
        if deactivating:
            revoke_tokens(user=retailer)
    return retailer


def create_retailer(*, distributor: User, **fields) -> User:
    return create_user(user_type=UserType.RETAILER, parent=distributor, created_by=distributor, **fields)


def deactivate_user(*, actor: User, user: User) -> User:
    """'Delete' = deactivate: the row, its wallet and its ledger history stay; every token dies.

    Deactivating an account that is already inactive changes nothing (who deactivated it stays)."""
    if actor.pk == user.pk:
        raise OwnAccountRefused()
    with transaction.atomic():
        deactivated = User.objects.filter(pk=user.pk, is_active=True).update(
            is_active=False,
            deactivated_by=actor,
            deactivated_by_role=actor.user_type,
            updated_at=timezone.now(),
        )
        if deactivated:
            revoke_tokens(user=user)
    user.refresh_from_db(fields=["is_active", "deactivated_by", "deactivated_by_role", "token_version"])
    return user


def reset_password(*, user: User, new_password: str) -> User:
    """Set a new password (Django's validators apply); every token of the user dies."""
    check_password_strength(password=new_password, user=user, field="new_password")
    user.set_password(new_password)
    with transaction.atomic():
        user.save(update_fields=["password", "updated_at"])  # bumps token_version (User.set_password)
        revoke_refresh_tokens(user=user)
    return user


def change_password(*, user: User, old_password: str, new_password: str) -> dict:
    """The signed-in user changes its own password: the current one must match, the new one passes
    Django's validators. Every earlier token (this session's included) dies; the answer is a fresh
    token pair, so the caller stays signed in and its other sessions are signed out."""
    if not user.check_password(old_password):
        raise WrongPassword(field="old_password")
    reset_password(user=user, new_password=new_password)
    return issue_tokens(user=user)


def assign_phone_number(*, user: User, phone_number: str) -> bool:
    """An admin gives `user` the (already normalised) phone number, vouched for: verified, and others'
    unverified claims on it released. False when it already had it, verified.

    Refuses a number that another account has verified."""
    if user.phone_number == phone_number and user.phone_verified:
        return False
    user.phone_number, user.phone_verified = phone_number, True
    _save(user)
    return True


def prove_phone_number(*, user: User, phone_number: str) -> User:
    """`user` has just proved `phone_number` by OTP (accounts.otp.verify_phone_for): it becomes the
    account's verified number and others' unverified claims on it are released. PhoneTaken (409) when
    another account already holds it verified."""
    if User.objects.filter(phone_number=phone_number, phone_verified=True).exclude(pk=user.pk).exists():
        raise PhoneTaken(field="phone_number")
    user.phone_number, user.phone_verified = phone_number, True
    try:
        with transaction.atomic():
            release_phone_claims(phone_number=phone_number, keep=user)
            user.save(update_fields=["phone_number", "phone_verified", "updated_at"])
    except IntegrityError:
        # Another account verified it between our check and this write.
        raise PhoneTaken(field="phone_number") from None
    return user


# --- tokens ---------------------------------------------------------------------------------------


def issue_tokens(*, user: User) -> dict:
    """A fresh refresh/access pair carrying the user's token_version, and the login recorded."""
    pair = token_pair_for(user)
    update_last_login(None, user)
    return pair


def authenticate_by_email(*, email: str, password: str, request) -> User:
    """The active user with this email (case-insensitive) and password, or InvalidCredentials; an
    unknown email costs one password hash too (accounts.lockout.EmailBackend).

    `request` is the Django request: the per-account lockout (django-axes, accounts/lockout.py) reads
    the client address from it and marks it. A locked account is refused with AccountLocked whatever
    the password, so a guesser learns nothing more once the limit is reached."""
    user = authenticate(request, email=email, password=password)
    if user is None:
        if getattr(request, "axes_locked_out", False):
            raise AccountLocked()
        raise InvalidCredentials()
    return user


def log_out(*, user: User, refresh: str) -> None:
    """End every session of the caller: `refresh` is blacklisted and the token_version bump cuts off
    every access and refresh token issued before. Only the caller's own refresh token is accepted;
    another's is refused like a bad one."""
    try:
        token = VersionedRefreshToken(refresh)
    except TokenError:
        raise InvalidRefreshToken(field="refresh") from None
    if str(token.payload.get(settings.SIMPLE_JWT.get("USER_ID_CLAIM", "user_id"))) != str(user.pk):
        raise InvalidRefreshToken(field="refresh")
    with transaction.atomic():
        token.blacklist()
        revoke_tokens(user=user)


def revoke_tokens(*, user: User) -> None:
    """Cut off every token issued to `user` so far: bump its token_version (checked on every request
    and refresh) and blacklist its outstanding refresh tokens (so the blacklist admin tells the truth)."""
    user.bump_token_version()
    revoke_refresh_tokens(user=user)


def revoke_refresh_tokens(*, user: User) -> int:
    """Blacklist every outstanding refresh token of `user` (deactivation, password reset)."""
    pending = OutstandingToken.objects.filter(user=user).exclude(blacklistedtoken__isnull=False)
    revoked = 0
    for token in pending:
        _, created = BlacklistedToken.objects.get_or_create(token=token)
        revoked += created
    return revoked
