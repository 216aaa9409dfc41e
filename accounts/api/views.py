"""The accounts API (api-contract.md, "Accounts"). Each view: input serializer, one service, output serializer.

Public endpoints (signup, logins, OTP, token refresh) run with `authentication_classes = []`: a stale or
invalid token sent by a client to a public endpoint is ignored instead of answering 401.
"""

import django_filters
from django.conf import settings
from django.utils.decorators import method_decorator
from drf_yasg import openapi
from drf_yasg.utils import swagger_auto_schema
from rest_framework import generics, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenRefreshView as SimpleJwtTokenRefreshView

from accounts import margins, otp, selectors, services
from accounts.api import serializers as s
from accounts.models import User
from core.filters import WholeNumberFilter
from core.net import client_ip
from core.permissions import IsAdmin, IsDistributor
from core.roles import UserType


def _logged_in(serializer_class, user, *, status_code=status.HTTP_200_OK, **extra):
    """A login answer (a token pair and the user, plus `extra`), rendered by `serializer_class`."""
    body = serializer_class({**services.issue_tokens(user=user), "user": user, **extra}).data
    return Response(body, status=status_code)


class PublicView(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []


# --- registration and logins ----------------------------------------------------------------------


class SignupView(PublicView):
    """Register a CLIENT account (the role cannot be chosen here) with its wallet; returns a token pair.

    A `phone_number` given here is stored unverified: it neither logs in by OTP nor receives payments
    until the account proves it (`otp/generate/` then `me/phone/verify/`), and it is never refused as
    taken (which would tell anyone that the number is registered)."""

    throttle_scope = "signup"

    @swagger_auto_schema(
        operation_id="auth_signup",
        request_body=s.SignupSerializer,
        responses={201: s.SignupResponseSerializer},
    )
    def post(self, request):
        data = s.SignupSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = services.sign_up(**data.validated_data)
        return _logged_in(
            s.SignupResponseSerializer,
            selectors.profile_of(user=user),
            message="Account created successfully",
            status_code=status.HTTP_201_CREATED,
        )


class EmailLoginView(PublicView):
    """Log in with email (case-insensitive) and password. 401 `invalid_credentials`; 429
    `account_locked` (with Retry-After) after AXES_FAILURE_LIMIT wrong passwords for the account, the
    right one included, until the cool-off has passed; 429 `throttled` past THROTTLE_LOGIN."""

    throttle_scope = "login"

    @swagger_auto_schema(
        operation_id="auth_login_email",
        request_body=s.EmailLoginSerializer,
        responses={200: s.LoginResponseSerializer},
    )
    def post(self, request):
        data = s.EmailLoginSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        # The Django request: the lockout marks it, and axes' middleware reads the mark from it.
        user = services.authenticate_by_email(**data.validated_data, request=request._request)
        return _logged_in(s.LoginResponseSerializer, selectors.profile_of(user=user))


class OtpGenerateView(PublicView):
    """Send a code by SMS (to log in, or, signed in, to prove a number at `me/phone/verify/`). The answer
    is the same whether or not the phone has an account.

    While the phone is guarded (its daily budget of wrong codes spent, see `otp/verify/`) the code is
    bound to the address that asked for it and allows one try. Refused with 429 and a Retry-After
    header inside the resend cooldown (`otp_cooldown`), past the hourly cap (`otp_rate_limited`), past
    the guarded codes of the day (for the phone: `otp_locked`; for this address: `otp_address_limit`),
    or when the client address sends too many requests (`throttled`). `otp` is in the answer only with
    OTP_EXPOSE_IN_RESPONSE."""

    throttle_scope = "otp"

    @swagger_auto_schema(request_body=s.OtpRequestSerializer, responses={200: s.OtpSentSerializer})
    def post(self, request):
        data = s.OtpRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        issued = otp.request_otp(phone_number=data.validated_data["phone_number"], requested_from=client_ip(request))
        sent = {"phone_number": issued.phone_number, "expires_in": issued.expires_in}
        if settings.OTP_EXPOSE_IN_RESPONSE:
            sent["otp"] = issued.code
        return Response(s.OtpSentSerializer(sent).data)


class OtpVerifyView(PublicView):
    """Log in with the phone's newest code. The account that has verified this number logs in; if none
    has, the caller has just proved it: any account that claimed the number without proof loses it,
    and a CLIENT `user_<digits>` with a wallet is created for the caller (`created: true`).

    Guessing is bounded per phone: OTP_DAILY_GUESS_BUDGET wrong codes a day from anywhere, then only
    codes bound to the address that asked for them, one try each (see README, "OTP guessing").
    400 `otp_invalid` / `otp_expired` / `otp_attempts_exceeded`; 403 `account_inactive`; 429 `otp_backoff`
    (too many wrong codes from this address: wait Retry-After seconds)."""

    throttle_scope = "otp"

    @swagger_auto_schema(request_body=s.OtpVerifySerializer, responses={200: s.OtpLoginResponseSerializer})
    def post(self, request):
        data = s.OtpVerifySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user, created = otp.verify_otp(
            phone_number=data.validated_data["phone_number"],
            code=data.validated_data["otp"],
            client_address=client_ip(request),
        )
        return _logged_in(s.OtpLoginResponseSerializer, selectors.profile_of(user=user), created=created)


@method_decorator(
    name="post",
    decorator=swagger_auto_schema(
        operation_id="auth_token_refresh",
        request_body=s.RefreshTokenSerializer,
        responses={200: s.TokenPairSerializer},
    ),
)
class TokenRefreshView(SimpleJwtTokenRefreshView):
    """Exchange a refresh token for a new access token and a new (rotated) refresh token.

    The old refresh token is blacklisted: using it again is a 401 `token_not_valid`."""

    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_scope = "token"


class LogoutView(APIView):
    """Sign the caller out everywhere: the given refresh token (the caller's own) is blacklisted and every
    access and refresh token issued to the account before now stops working at once. Answers 200 with a
    body (not 205), so every client can parse it."""

    permission_classes = [IsAuthenticated]

    @swagger_auto_schema(
        operation_id="auth_logout", request_body=s.RefreshTokenSerializer, responses={200: s.MessageSerializer}
    )
    def post(self, request):
        data = s.RefreshTokenSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.log_out(user=request.user, refresh=data.validated_data["refresh"])
        return Response(s.MessageSerializer({"detail": "Logged out."}).data)


class MeView(APIView):
    """The caller's own profile with wallet and margin. PATCH changes names, email and username only:
    user_type, parent, is_active, phone_number and balances are read-only here and ignored if sent."""

    permission_classes = [IsAuthenticated]

    @staticmethod
    def render(user):
        profile = selectors.profile_of(user=user)
        return Response(
            s.ProfileSerializer(profile, context={"margin_percentage": margins.margin_for(user=profile)}).data
        )

    @swagger_auto_schema(operation_id="auth_me_read", responses={200: s.ProfileSerializer})
    def get(self, request):
        return self.render(request.user)

    @swagger_auto_schema(
        operation_id="auth_me_update", request_body=s.ProfileUpdateSerializer, responses={200: s.ProfileSerializer}
    )
    def patch(self, request):
        data = s.ProfileUpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        user = services.update_profile(user=request.user, **data.validated_data)
        return self.render(user)


class PhoneVerifyView(APIView):
    """Prove a phone number while signed in: ask `otp/generate/` for a code to the number, then send it
    here. The number (the account's own when `phone_number` is left out) becomes the account's,
    verified: from then on it logs this account in by OTP and receives payments sent to it, and
    unverified claims of other accounts on it are released.

    400 `otp_invalid` / `otp_expired` / `otp_attempts_exceeded` (or `phone_number` missing when the
    account has none); 409 `phone_taken` when another account already holds it verified; 429 as for
    `otp/verify/`."""

    permission_classes = [IsAuthenticated]
    throttle_scope = "otp"

    @swagger_auto_schema(
        operation_id="auth_me_phone_verify",
        request_body=s.PhoneVerifySerializer,
        responses={200: s.ProfileSerializer},
    )
    def post(self, request):
        data = s.PhoneVerifySerializer(data=request.data, context={"user": request.user})
        data.is_valid(raise_exception=True)
        user = otp.verify_phone_for(
            user=request.user,
            phone_number=data.validated_data["phone_number"],
            code=data.validated_data["otp"],
            client_address=client_ip(request),
        )
        return MeView.render(user)


class PasswordChangeView(APIView):
    """Change the caller's own password: `old_password`, then `new_password` twice (Django's validators
    apply). Every token issued before (this one included) stops working at once; the answer carries a
    fresh pair, so this client stays signed in while every other session is signed out.

    400 `wrong_password` (old_password), `password_invalid`, `mismatch`."""

    permission_classes = [IsAuthenticated]
    # Per signed-in user: a stolen access token must not become a fast password-guessing oracle.
    throttle_scope = "login"

    @swagger_auto_schema(
        operation_id="auth_me_password_change",
        request_body=s.PasswordChangeSerializer,
        responses={200: s.PasswordChangedSerializer},
    )
    def post(self, request):
        data = s.PasswordChangeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        tokens = services.change_password(
            user=request.user,
            old_password=data.validated_data["old_password"],
            new_password=data.validated_data["new_password"],
        )
        changed = {"detail": "Password changed; other sessions are signed out.", **tokens}
        return Response(s.PasswordChangedSerializer(changed).data)


# --- admin user management ------------------------------------------------------------------------


class AdminUserFilter(django_filters.FilterSet):
    user_type = django_filters.TypedChoiceFilter(
        choices=UserType.choices, coerce=int, label="Role: 1 admin, 2 distributor, 3 retailer, 4 client."
    )
    is_active = django_filters.BooleanFilter(label="Active accounts (true) or deactivated ones (false).")
    parent = WholeNumberFilter(field_name="parent_id", label="Id of the retailers' distributor.")

    class Meta:
        model = User
        fields = ["user_type", "is_active", "parent"]


class RetailerFilter(django_filters.FilterSet):
    is_active = django_filters.BooleanFilter(label="Active retailers (true) or deactivated ones (false).")

    class Meta:
        model = User
        fields = ["is_active"]


@method_decorator(name="get", decorator=swagger_auto_schema(operation_id="auth_admin_users_list"))
class AdminUserListView(generics.ListAPIView):
    """Distributors and retailers (any role with `?user_type=`), each with wallet_id and wallet_balance."""

    permission_classes = [IsAdmin]
    serializer_class = s.UserSerializer
    filterset_class = AdminUserFilter
    search_fields = ["email", "username", "phone_number", "first_name", "last_name"]
    ordering_fields = ["id", "username", "email", "date_joined", "user_type", "wallet__balance"]
    ordering = ["id"]

    def get_queryset(self):
        return selectors.users_for_admin(all_roles="user_type" in self.request.query_params)


class AdminUserCreateView(APIView):
    """Create a user of any role with its wallet. `phone` is accepted as an alias of `phone_number`; the
    admin vouches for the number (verified at once; unverified claims of others on it are released).

    An ADMIN created here is also is_staff and is_superuser (it may use the Django admin)."""

    permission_classes = [IsAdmin]

    @swagger_auto_schema(
        operation_id="auth_admin_users_create",
        request_body=s.AdminUserCreateSerializer,
        responses={201: s.UserCreatedSerializer},
    )
    def post(self, request):
        data = s.AdminUserCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        # An admin vouches for the number it sets: verified at once.
        user = services.create_user(created_by=request.user, phone_verified=True, **data.validated_data)
        user = selectors.profile_of(user=user)
        created = {"message": "User created successfully", "user": user}
        return Response(s.UserCreatedSerializer(created).data, status=status.HTTP_201_CREATED)


class AdminUserDetailView(APIView):
    permission_classes = [IsAdmin]

    @swagger_auto_schema(operation_id="auth_admin_users_read", responses={200: s.UserSerializer})
    def get(self, request, pk):
        return Response(s.UserSerializer(selectors.user_for_admin(pk=pk)).data)


class AdminUserUpdateView(APIView):
    """Change a user's profile, phone, role, parent or activity. A retailer's parent must be a distributor.
    A number set here is vouched for (verified). A deactivation stands until an admin lifts it; a
    deactivation or a role change ends every session of the user."""

    permission_classes = [IsAdmin]

    def _update(self, request, pk, *, partial):
        user = selectors.user_for_admin(pk=pk)
        data = s.AdminUserUpdateSerializer(data=request.data, partial=partial)
        data.is_valid(raise_exception=True)
        user = services.update_user(actor=request.user, user=user, **data.validated_data)
        return Response(s.UserSerializer(selectors.user_for_admin(pk=user.pk)).data)

    @swagger_auto_schema(
        operation_id="auth_admin_users_replace",
        request_body=s.AdminUserUpdateSerializer,
        responses={200: s.UserSerializer},
    )
    def put(self, request, pk):
        return self._update(request, pk, partial=False)

    @swagger_auto_schema(
        operation_id="auth_admin_users_update",
        request_body=s.AdminUserUpdateSerializer,
        responses={200: s.UserSerializer},
    )
    def patch(self, request, pk):
        return self._update(request, pk, partial=True)


class AdminUserDeleteView(APIView):
    """Deactivate the account (its wallet and ledger history stay; its tokens stop working). 204."""

    permission_classes = [IsAdmin]

    @swagger_auto_schema(
        operation_id="auth_admin_users_delete", responses={204: openapi.Response("Deactivated; no body.")}
    )
    def delete(self, request, pk):
        services.deactivate_user(actor=request.user, user=selectors.user_for_admin(pk=pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class AdminUserResetPasswordView(APIView):
    """Set a new password (Django's validators apply); the user's refresh tokens are revoked."""

    permission_classes = [IsAdmin]

    @swagger_auto_schema(
        operation_id="auth_admin_users_reset_password",
        request_body=s.PasswordResetSerializer,
        responses={200: s.MessageSerializer},
    )
    def post(self, request, pk):
        user = selectors.user_for_admin(pk=pk)
        data = s.PasswordResetSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.reset_password(user=user, new_password=data.validated_data["new_password"])
        return Response(s.MessageSerializer({"detail": "Password reset."}).data)


# --- a distributor's retailers --------------------------------------------------------------------


@method_decorator(name="get", decorator=swagger_auto_schema(operation_id="auth_retailers_list"))
class RetailerListCreateView(generics.ListAPIView):
    """The calling distributor's own retailers with wallet balances; POST creates one under it."""

    permission_classes = [IsDistributor]
    serializer_class = s.UserSerializer
    filterset_class = RetailerFilter
    search_fields = ["email", "username", "phone_number", "first_name", "last_name"]
    ordering_fields = ["id", "username", "date_joined", "wallet__balance"]
    ordering = ["id"]

    def get_queryset(self):
        return selectors.retailers_of(distributor=self.request.user)

    @swagger_auto_schema(
        operation_id="auth_retailers_create",
        request_body=s.RetailerCreateSerializer,
        responses={201: s.UserSerializer},
    )
    def post(self, request):
        data = s.RetailerCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        retailer = services.create_retailer(distributor=request.user, **data.validated_data)
        return Response(
            s.UserSerializer(selectors.retailer_of(distributor=request.user, pk=retailer.pk)).data,
            status=status.HTTP_201_CREATED,
        )


class RetailerDetailView(APIView):
    """One of the calling distributor's retailers; another distributor's retailer is a 404. A number set
    here is stored unverified (the retailer proves it by OTP). The distributor may re-activate only a
    retailer it deactivated itself: 403 `deactivated_by_admin` otherwise."""

    permission_classes = [IsDistributor]

    @swagger_auto_schema(operation_id="auth_retailers_read", responses={200: s.UserSerializer})
    def get(self, request, pk):
        return Response(s.UserSerializer(selectors.retailer_of(distributor=request.user, pk=pk)).data)

    @swagger_auto_schema(
        operation_id="auth_retailers_update",
        request_body=s.RetailerUpdateSerializer,
        responses={200: s.UserSerializer},
    )
    def patch(self, request, pk):
        retailer = selectors.retailer_of(distributor=request.user, pk=pk)
        data = s.RetailerUpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        services.update_retailer(distributor=request.user, retailer=retailer, **data.validated_data)
        return Response(s.UserSerializer(selectors.retailer_of(distributor=request.user, pk=pk)).data)
