"""The one role scope (accounts.selectors.users_in_scope), as every app's selectors apply it."""

import pytest
from django.contrib.auth.models import AnonymousUser

from accounts import margins
from accounts.models import UserMargin
from accounts.selectors import retailers_of
from purchases.selectors import purchases_for
from wallet import selectors, services

pytestmark = pytest.mark.django_db


def test_an_anonymous_caller_is_in_no_ones_scope_in_any_selector(admin_user, distributor, retailer):
    # drf-yasg builds the schema with an anonymous request: the selectors answer it, no view guards.
    services.fund_wallet(user=retailer, amount="10.00", initiated_by=admin_user)
    UserMargin.objects.create(user=retailer, margin_percentage="1.00")
    nobody = AnonymousUser()
    assert not selectors.wallets_in_scope(user=nobody).exists()
    assert not selectors.transfers_in_scope(user=nobody).exists()
    assert not margins.margins_in_scope(user=nobody).exists()
    assert not retailers_of(distributor=nobody).exists()
    assert not purchases_for(user=nobody).exists()
