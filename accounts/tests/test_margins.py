"""Margins: who may set whose, and within which bounds (accounts.margins)."""

from decimal import Decimal

import pytest
from django.contrib.admin.sites import site
from django.test import Client
from django.urls import reverse

from accounts import margins
from accounts.models import UserMargin
from accounts.tests.factories import RetailerFactory
from core.errors import NotFound

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_browser(admin_user):
    # force_login: Client.login() calls authenticate() without a request, which the login lockout
    # (django-axes) refuses; signing in through the admin's form is what tests/security covers.
    browser = Client()
    browser.force_login(admin_user)
    return browser


def test_set_margin_lets_a_distributor_set_only_its_retailers_up_to_its_own(admin_user, distributor, retailer):
    margins.set_margin(user=distributor, margin_percentage="5.00", set_by=admin_user)
    assert margins.set_margin(user=retailer, margin_percentage="5", set_by=distributor).margin_percentage == 5
    with pytest.raises(margins.MarginAboveOwn):
        margins.set_margin(user=retailer, margin_percentage="5.01", set_by=distributor)
    with pytest.raises(NotFound):
        margins.set_margin(user=RetailerFactory(), margin_percentage="1", set_by=distributor)
    with pytest.raises(margins.MarginNotAllowed):
        margins.set_margin(user=retailer, margin_percentage="1", set_by=retailer)
    assert UserMargin.objects.get(user=retailer).set_by == distributor


@pytest.mark.parametrize("margin", ["-0.01", "100.01", "1.001", "abc", None, 1.5, "NaN", "Infinity"])
def test_set_margin_refuses_a_value_outside_0_to_100_with_two_places(admin_user, retailer, margin):
    with pytest.raises(margins.InvalidMargin):
        margins.set_margin(user=retailer, margin_percentage=margin, set_by=admin_user)


def test_margin_refusals_name_the_field_and_the_limit(admin_user, distributor, retailer):
    assert margins.set_margin(user=distributor, margin_percentage="100", set_by=admin_user).margin_percentage == 100
    margins.set_margin(user=distributor, margin_percentage="4.50", set_by=admin_user)
    with pytest.raises(margins.InvalidMargin) as refusal:
        margins.set_margin(user=retailer, margin_percentage="100.01", set_by=admin_user)
    assert refusal.value.field == "margin_percentage"
    with pytest.raises(margins.MarginAboveOwn) as refusal:
        margins.set_margin(user=retailer, margin_percentage="4.51", set_by=distributor)
    assert refusal.value.field == "margin_percentage"
    assert str(refusal.value) == (
        "A retailer's margin cannot exceed its distributor's own margin (4.50%), which an administrator sets."
    )
    with pytest.raises(NotFound) as refusal:
        margins.set_margin(user=RetailerFactory(), margin_percentage="1", set_by=distributor)
    assert str(refusal.value) == "User not found."


def test_saving_a_margin_in_the_admin_goes_through_set_margin(admin_browser, admin_user, retailer):
    response = admin_browser.post(
        reverse("admin:accounts_usermargin_add"), {"user": retailer.pk, "margin_percentage": "2.50"}
    )
    assert response.status_code == 302
    margin = UserMargin.objects.get(user=retailer)
    assert margin.margin_percentage == Decimal("2.50") and margin.set_by == admin_user
    refused = admin_browser.post(
        reverse("admin:accounts_usermargin_change", args=[margin.pk]), {"margin_percentage": "100.5"}
    )
    assert refused.status_code == 200 and UserMargin.objects.get(user=retailer).margin_percentage == Decimal("2.50")


def test_margins_cannot_be_deleted_behind_set_margin(rf, admin_user):
    request = rf.get("/")
    request.user = admin_user
    assert not site._registry[UserMargin].has_delete_permission(request, None)
