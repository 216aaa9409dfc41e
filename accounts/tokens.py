"""JWTs that die with the account's `token_version` (security issue 12.7).

Every token issued here carries the user's `token_version`. JWT authentication already loads the
user row on each request, so comparing the claim with the row costs no query; the refresh endpoint
compares it too. Bumping the version (logout, password change or reset, deactivation, role change:
accounts.services.revoke_tokens) therefore cuts off every access and refresh token issued before,
at once, without a blacklist lookup per request.

A token without the claim counts as version 0: tokens minted before this existed stay valid only
until the account's first bump, exactly like a token issued at version 0.
"""

from types import SimpleNamespace

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken
from rest_framework_simplejwt.serializers import TokenRefreshSerializer
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken
from rest_framework_simplejwt.utils import datetime_from_epoch

from core.precompiled import PrecompiledQuery

TOKEN_VERSION_CLAIM = "ver"


def token_version_of(token) -> int:
    return token.payload.get(TOKEN_VERSION_CLAIM, 0)


class RevokedToken(AuthenticationFailed):
    default_detail = "The token was revoked (logout, password change, deactivation or role change); log in again."
    default_code = "token_not_valid"


class VersionedRefreshToken(RefreshToken):
    """A refresh token carrying the user's token_version; its access tokens copy the claim."""

    @classmethod
    def for_user(cls, user):
        token = cls()
        token[api_settings.USER_ID_CLAIM] = str(getattr(user, api_settings.USER_ID_FIELD))
        token[TOKEN_VERSION_CLAIM] = user.token_version
        # What simplejwt's BlacklistMixin.for_user does, after the claim is set, so that the stored
        # token is the one handed out (and without its extra lookup of the user).
        OutstandingToken.objects.create(
            user=user,
            jti=token[api_settings.JTI_CLAIM],
            token=str(token),
            created_at=token.current_time,
            expires_at=datetime_from_epoch(token["exp"]),
        )
        return token


def token_pair_for(user) -> dict:
    refresh = VersionedRefreshToken.for_user(user)
    return {"access": str(refresh.access_token), "refresh": str(refresh)}


class VersionedJWTAuthentication(JWTAuthentication):
    """simplejwt's authentication, plus: the token's version must be the user's current one.

    The user is loaded with its wallet in the same query (a LEFT JOIN on the wallet's unique user
    index), so that a balance read needs no second query (wallet.selectors.own_wallet). That query
    runs on every authenticated request, so it is compiled once (core.precompiled): compiling it
    cost more CPU than the database spends answering it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # simplejwt's get_user runs `self.user_model.objects.get(<USER_ID_FIELD>=...)` and catches
        # DoesNotExist; the rest of its checks (active, revoked password) stay simplejwt's.
        self.user_model = SimpleNamespace(
            objects=SimpleNamespace(get=_user_with_wallet), DoesNotExist=get_user_model().DoesNotExist
        )

    def get_user(self, validated_token):
        user = super().get_user(validated_token)
        if token_version_of(validated_token) != user.token_version:
            raise RevokedToken()
        return user


_USER_WITH_WALLET = PrecompiledQuery(
    lambda marker: get_user_model().objects.select_related("wallet").filter(pk=marker), -7_000_001
)


def _user_with_wallet(**lookup):
    """`User.objects.select_related("wallet").get(**lookup)` for the one lookup simplejwt makes, the
    token's user id (USER_ID_FIELD, the primary key)."""
    users = get_user_model()
    ((field, value),) = lookup.items()
    if users._meta.get_field(field) is not users._meta.pk:
        return users.objects.select_related("wallet").get(**lookup)
    try:
        pk = users._meta.pk.to_python(value)
    except ValidationError as exc:
        raise users.DoesNotExist from exc
    if not -(2**63) <= pk < 2**63:  # as the ORM answers an id no bigint can hold: nobody
        raise users.DoesNotExist
    found = _USER_WITH_WALLET.first(pk)
    if found is None:
        raise users.DoesNotExist
    return found


class VersionedTokenRefreshSerializer(TokenRefreshSerializer):
    """Refresh refuses a token of an earlier version (or of an account that no longer exists);
    the rotated refresh token keeps the claim."""

    token_class = VersionedRefreshToken

    def validate(self, attrs):
        refresh = self.token_class(attrs["refresh"])
        user_id = refresh.payload.get(api_settings.USER_ID_CLAIM)
        current = (
            get_user_model()
            .objects.filter(**{api_settings.USER_ID_FIELD: user_id})
            .values_list("token_version", flat=True)
            .first()
        )
        if current is None:
            raise InvalidToken("The refresh token belongs to no account.")
        if token_version_of(refresh) != current:
            raise RevokedToken()
        return super().validate(attrs)
