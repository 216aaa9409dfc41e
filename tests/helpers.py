"""Helpers shared by the tests of every app (fixtures live in conftest.py)."""

from rest_framework.test import APIClient

from accounts.tokens import token_pair_for


def client_for(user):
    """An APIClient sending `user`'s Bearer access token."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_pair_for(user)['access']}")
    return client
