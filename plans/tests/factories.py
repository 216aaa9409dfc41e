from decimal import Decimal

import factory

from plans.models import Provider, RechargePlan


class ProviderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Provider
        django_get_or_create = ["code"]

    code = factory.Sequence(lambda n: f"operator{n}")
    name = factory.LazyAttribute(lambda p: p.code.capitalize())


class RechargePlanFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RechargePlan

    provider = factory.SubFactory(ProviderFactory)
    code = factory.Sequence(lambda n: f"plan-{n}")
    circle = RechargePlan.Circle.ALL
    plan_type = RechargePlan.PlanType.PREPAID
    amount = Decimal("199.00")
    validity_days = 28
    data = "1.5 GB/day"
    talktime = "Unlimited"
    sms = "100/day"
    description = factory.LazyAttribute(lambda p: f"{p.provider.name} {p.amount}: {p.data}")
