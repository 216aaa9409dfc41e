"""Writes to the recharge catalogue: admin edits and the populate_plans loader."""

import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import phonenumbers
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from core.errors import DomainError
from plans.models import Provider, RechargePlan

CATALOGUE_FILE = Path(__file__).resolve().parent / "data" / "plans.json"

# The fields a catalogue file describes. `is_active` is not among them: retiring a plan is an
# admin's decision, and re-loading the catalogue must not bring a retired plan back.
PLAN_FIELDS = ("circle", "plan_type", "amount", "validity_days", "data", "talktime", "sms", "description")


class InvalidCatalogue(DomainError):
    code = "invalid_catalogue"
    message = "The plan catalogue is invalid: {reason}"


@dataclass
class LoadReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    providers_created: int = 0
    codes: list = field(default_factory=list)

    def __str__(self):
        return (
            f"plans: {self.created} created, {self.updated} updated, {self.unchanged} unchanged; "
            f"providers: {self.providers_created} created"
        )


def create_plan(*, provider, **values) -> RechargePlan:
    return RechargePlan.objects.create(provider=provider, **values)


def update_plan(*, plan, **values) -> RechargePlan:
    for name, value in values.items():
        setattr(plan, name, value)
    plan.save()
    return plan


def delete_or_retire_plan(*, plan) -> str:
    """Delete a plan nobody ever bought; retire (is_active=False) one that purchases refer to, so
    their history keeps its plan. Returns "deleted" or "retired".

    The delete runs in a savepoint: a purchase committed between the check and the delete makes
    the database refuse it (the foreign key is PROTECT), and the plan is retired instead."""
    try:
        with transaction.atomic():
            plan.delete()
        return "deleted"
    except (ProtectedError, IntegrityError):
        RechargePlan.objects.filter(pk=plan.pk).update(is_active=False)
        plan.is_active = False
        return "retired"


def load_catalogue(*, path=CATALOGUE_FILE) -> LoadReport:
    """Create or update providers and plans from a JSON catalogue, keyed by their `code`.

    Idempotent: a plan whose fields already match is not written at all, so a second run reports
    everything unchanged. One transaction: a bad entry anywhere loads nothing."""
    entries = _read(path)
    report = LoadReport()
    with transaction.atomic():
        providers = {}
        for item in entries["providers"]:
            values = {"name": item["name"], "country": item.get("country", "IN")}
            if values["country"] not in phonenumbers.SUPPORTED_REGIONS:
                raise InvalidCatalogue(reason=f"provider {item['code']}: unknown country {values['country']!r}")
            provider, created = Provider.objects.get_or_create(code=item["code"], defaults=values)
            changed = [name for name, value in values.items() if getattr(provider, name) != value]
            if not created and changed:
                for name in changed:
                    setattr(provider, name, values[name])
                provider.save(update_fields=changed)
            report.providers_created += created
            providers[provider.code] = provider
        codes = [item.get("code") for item in entries["plans"]]
        existing = {plan.code: plan for plan in RechargePlan.objects.filter(code__in=codes)}
        for item in entries["plans"]:
            values = _plan_values(item, providers)
            plan = existing.get(item["code"])
            report.codes.append(item["code"])
            if plan is None:
                RechargePlan.objects.create(code=item["code"], **values)
                report.created += 1
            elif any(getattr(plan, name) != value for name, value in values.items()):
                update_plan(plan=plan, **values)
                report.updated += 1
            else:
                report.unchanged += 1
    return report


def _read(path):
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidCatalogue(reason=str(exc)) from None
    if not isinstance(entries, dict) or not isinstance(entries.get("plans"), list):
        raise InvalidCatalogue(reason='expected {"providers": [...], "plans": [...]}')
    entries.setdefault("providers", [])
    return entries


def _plan_values(item, providers):
    code = item.get("code", "?")
    provider = providers.get(item.get("provider"))
    if provider is None:
        provider = Provider.objects.filter(code=item.get("provider")).first()
        if provider is None:
            raise InvalidCatalogue(reason=f"plan {code}: unknown provider {item.get('provider')!r}")
        providers[provider.code] = provider
    try:
        amount = Decimal(str(item["amount"])).quantize(Decimal("0.01"))
    except (KeyError, InvalidOperation):
        raise InvalidCatalogue(reason=f"plan {code}: amount missing or not a number") from None
    if amount <= 0:
        raise InvalidCatalogue(reason=f"plan {code}: amount must be positive")
    if item.get("circle", "ALL") not in RechargePlan.Circle.values:
        raise InvalidCatalogue(reason=f"plan {code}: unknown circle {item.get('circle')!r}")
    if item.get("plan_type", "PREPAID") not in RechargePlan.PlanType.values:
        raise InvalidCatalogue(reason=f"plan {code}: unknown plan type {item.get('plan_type')!r}")
    return {
        "provider": provider,
        "circle": item.get("circle", RechargePlan.Circle.ALL),
        "plan_type": item.get("plan_type", RechargePlan.PlanType.PREPAID),
        "amount": amount,
        "validity_days": item.get("validity_days"),
        "data": item.get("data", ""),
        "talktime": item.get("talktime", ""),
        "sms": item.get("sms", ""),
        "description": item.get("description", ""),
    }
