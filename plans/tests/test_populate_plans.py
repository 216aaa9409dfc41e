import json
from io import StringIO

import pytest
from django.core.management import call_command

from plans.models import Provider, RechargePlan
from plans.services import CATALOGUE_FILE, InvalidCatalogue, load_catalogue

pytestmark = pytest.mark.django_db


def snapshot():
    return list(RechargePlan.objects.order_by("code").values())


def test_catalogue_file_is_realistic():
    catalogue = json.loads(CATALOGUE_FILE.read_text())
    plans = catalogue["plans"]
    assert len(plans) >= 100
    assert len({plan["provider"] for plan in plans}) >= 4
    assert len({plan["circle"] for plan in plans}) >= 3
    assert len({plan["plan_type"] for plan in plans}) >= 4


def test_populate_plans_loads_the_catalogue():
    out = StringIO()
    call_command("populate_plans", stdout=out)
    assert RechargePlan.objects.count() >= 100
    assert {"airtel", "jio", "vi", "bsnl"} <= set(Provider.objects.values_list("code", flat=True))
    assert "created" in out.getvalue()


def test_populate_plans_twice_gives_the_same_catalogue():
    call_command("populate_plans", stdout=StringIO())
    first = snapshot()
    out = StringIO()
    call_command("populate_plans", stdout=out)
    assert snapshot() == first
    assert "0 created, 0 updated" in out.getvalue()


def test_populate_plans_repairs_a_changed_price_and_keeps_a_retired_plan_retired():
    load_catalogue()
    plan = RechargePlan.objects.get(code="jio-pre-299")
    RechargePlan.objects.filter(pk=plan.pk).update(amount="1.00", is_active=False)
    report = load_catalogue()
    plan.refresh_from_db()
    assert (report.updated, report.created) == (1, 0)
    assert str(plan.amount) == "299.00" and plan.is_active is False


def test_populate_plans_refuses_a_broken_file_and_loads_nothing(tmp_path):
    broken = tmp_path / "plans.json"
    broken.write_text(json.dumps({"providers": [], "plans": [{"code": "x-1", "provider": "nobody", "amount": "10"}]}))
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="unknown provider"):
        call_command("populate_plans", file=str(broken), stdout=StringIO())
    assert not RechargePlan.objects.exists()


def test_populate_plans_sets_each_operators_country_and_refuses_an_unknown_one(tmp_path):
    call_command("populate_plans", stdout=StringIO())
    assert set(Provider.objects.values_list("country", flat=True)) == {"IN"}
    catalogue = {"providers": [{"code": "ntc", "name": "Nepal Telecom", "country": "NP"}], "plans": []}
    path = tmp_path / "np.json"
    path.write_text(json.dumps(catalogue))

    load_catalogue(path=path)
    catalogue["providers"][0]["country"] = "XX"
    path.write_text(json.dumps(catalogue))

    assert Provider.objects.get(code="ntc").country == "NP"
    with pytest.raises(InvalidCatalogue, match="unknown country 'XX'"):
        load_catalogue(path=path)
