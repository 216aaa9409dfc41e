"""FieldsOnceModelSerializer: fields worked out once per class, a fresh copy for every instance."""

import threading

import pytest
from rest_framework import serializers

from core.serializers import FieldsOnceModelSerializer
from plans.api.serializers import RechargePlanInputSerializer
from purchases.api.serializers import PurchaseSerializer
from wallet.api.serializers import WalletSerializer
from wallet.models import Wallet


class OnceWalletSerializer(FieldsOnceModelSerializer):
    class Meta:
        model = Wallet
        fields = ["id", "balance", "held", "currency"]


class PlainWalletSerializer(serializers.ModelSerializer):
    class Meta:
        model = Wallet
        fields = ["id", "balance", "held", "currency"]


def test_the_model_is_read_for_fields_once_per_class(monkeypatch):
    built = []
    original = serializers.ModelSerializer.get_fields

    def counting(self):
        built.append(type(self))
        return original(self)

    monkeypatch.setattr(serializers.ModelSerializer, "get_fields", counting)
    monkeypatch.delattr(OnceWalletSerializer, "_fields_template", raising=False)
    for _ in range(5):
        assert list(OnceWalletSerializer().fields) == ["id", "balance", "held", "currency"]
    for _ in range(2):
        PlainWalletSerializer().fields
    assert built == [OnceWalletSerializer] + [PlainWalletSerializer] * 2


def test_every_instance_has_fields_of_its_own():
    first, second = OnceWalletSerializer(), OnceWalletSerializer()
    for name in first.fields:
        assert first.fields[name] is not second.fields[name]
        assert first.fields[name].parent is first
        assert second.fields[name].parent is second
    assert not any(field.field_name for field in OnceWalletSerializer._fields_template.values()), (
        "the template stays unbound"
    )


def test_a_subclass_has_a_template_of_its_own():
    class WithUser(OnceWalletSerializer):
        class Meta(OnceWalletSerializer.Meta):
            fields = ["id", "user"]

    assert list(OnceWalletSerializer().fields) == ["id", "balance", "held", "currency"]
    assert list(WithUser().fields) == ["id", "user"]
    assert list(OnceWalletSerializer().fields) == ["id", "balance", "held", "currency"]


@pytest.mark.django_db  # a related field's repr lists its queryset
@pytest.mark.parametrize("serializer_class", [PurchaseSerializer, WalletSerializer, RechargePlanInputSerializer])
def test_the_same_fields_as_a_plain_model_serializer(serializer_class):
    # The same class with DRF's own get_fields, which works them out on every call.
    plain = type("Plain", (serializer_class,), {"get_fields": serializers.ModelSerializer.get_fields})
    ours, theirs = serializer_class().fields, plain().fields
    assert list(ours) == list(theirs)
    for name in ours:
        assert type(ours[name]) is type(theirs[name])
        assert repr(ours[name]) == repr(theirs[name])


def test_threads_building_at_once_each_get_a_whole_set():
    class Raced(FieldsOnceModelSerializer):
        class Meta:
            model = Wallet
            fields = ["id", "balance", "held", "currency"]

    results, start = [], threading.Barrier(8)

    def build():
        start.wait()
        serializer = Raced()
        fields = serializer.fields
        results.append((list(fields), serializer, list(fields.values())))

    threads = [threading.Thread(target=build) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [names for names, _, _ in results] == [["id", "balance", "held", "currency"]] * 8
    every_field = [field for _, _, fields in results for field in fields]
    assert len({id(field) for field in every_field}) == 8 * 4, "no two serializers share a field"
    for _, serializer, fields in results:
        assert all(field.parent is serializer for field in fields)
