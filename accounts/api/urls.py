from django.urls import path

from accounts.api import views

app_name = "accounts"

urlpatterns = [
    path("signup/", views.SignupView.as_view(), name="signup"),
    path("login/email/", views.EmailLoginView.as_view(), name="login-email"),
    path("otp/generate/", views.OtpGenerateView.as_view(), name="otp-generate"),
    path("otp/verify/", views.OtpVerifyView.as_view(), name="otp-verify"),
    path("token/refresh/", views.TokenRefreshView.as_view(), name="token-refresh"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("me/", views.MeView.as_view(), name="me"),
    path("me/password/", views.PasswordChangeView.as_view(), name="me-password"),
    path("me/phone/verify/", views.PhoneVerifyView.as_view(), name="me-phone-verify"),
    path("admin/users/", views.AdminUserListView.as_view(), name="admin-users"),
    path("admin/users/create/", views.AdminUserCreateView.as_view(), name="admin-users-create"),
    path("admin/users/<int:pk>/", views.AdminUserDetailView.as_view(), name="admin-users-detail"),
    path("admin/users/<int:pk>/update/", views.AdminUserUpdateView.as_view(), name="admin-users-update"),
    path("admin/users/<int:pk>/delete/", views.AdminUserDeleteView.as_view(), name="admin-users-delete"),
    path(
        "admin/users/<int:pk>/reset-password/",
        views.AdminUserResetPasswordView.as_view(),
        name="admin-users-reset-password",
    ),
    path("retailers/", views.RetailerListCreateView.as_view(), name="retailers"),
    path("retailers/<int:pk>/", views.RetailerDetailView.as_view(), name="retailers-detail"),
]

# The OTP-wallet paths (the OTP wallet app's addresses), mounted at /auth/ by config/urls.py: the same views.
legacy_urlpatterns = [
    path("send-otp/", views.OtpGenerateView.as_view(), name="send-otp"),
    path("verify-otp/", views.OtpVerifyView.as_view(), name="verify-otp"),
]
