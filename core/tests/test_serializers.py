"""FieldsOnceSerializer and FieldsOnceModelSerializer: fields worked out once per class, a fresh copy for
every instance."""

import threading
from decimal import Decimal

import pytest
from rest_framework import serializers

from core.serializers import FieldsOnceModelSerializer
from plans.api.serializers import RechargePlanInputSerializer
from purchases.api.serializers import PurchaseSerializer
from wallet.api.serializers import MoneyMovedSerializer, TransferInputSerializer, WalletSerializer
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
@pytest.mark.parametrize(
    ("serializer_class", "drf"),
    [
        (PurchaseSerializer, serializers.ModelSerializer),
        (WalletSerializer, serializers.ModelSerializer),
        (RechargePlanInputSerializer, serializers.ModelSerializer),
        # A plain Serializer: DRF deep-copies its declared fields for every instance.
        (TransferInputSerializer, serializers.Serializer),
        (MoneyMovedSerializer, serializers.Serializer),
    ],
)
def test_the_same_fields_as_drf_builds(serializer_class, drf):
    # The same class with DRF's own get_fields, which works them out on every call.
    plain = type("Plain", (serializer_class,), {"get_fields": drf.get_fields})
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


def test_each_instance_binds_fields_of_its_own_and_the_template_stays_unbound():
    # Whether copied deep or shallow, binding sets only the copy's own attributes.
    first, second = PurchaseSerializer(), PurchaseSerializer()
    first_fields, second_fields = first.fields, second.fields
    template = PurchaseSerializer.__dict__["_fields_template"]
    for name, field in first_fields.items():
        assert field is not second_fields[name] and field is not template[name]
        assert (field.parent, second_fields[name].parent) == (first, second)
        assert (field.field_name, second_fields[name].field_name) == (name, name)
        assert template[name].field_name is None, "the template stays unbound"
        assert field.source_attrs is not second_fields[name].source_attrs


def test_a_shallow_copy_is_used_only_for_fields_that_hold_settings(monkeypatch):
    import copy as copy_module
    from types import SimpleNamespace

    from core import serializers as module

    deep = []

    def deepcopy(field):
        deep.append(type(field))
        return copy_module.deepcopy(field)

    monkeypatch.setattr(module, "copy", SimpleNamespace(copy=copy_module.copy, deepcopy=deepcopy))

    class UpperCaseField(serializers.CharField):  # a subclass could hold state: deep, unless it says
        pass

    class LabelField(serializers.CharField):
        copied_shallow = True

    class WithNested(FieldsOnceModelSerializer):
        nested = OnceWalletSerializer(source="*", read_only=True)
        tags = serializers.ListField(child=serializers.CharField(), read_only=True)
        shouted = UpperCaseField(source="currency", read_only=True)
        label = LabelField(source="currency", read_only=True)

        class Meta:
            model = Wallet
            fields = ["id", "balance", "currency", "nested", "tags", "shouted", "label"]

    WithNested().fields

    assert deep == [OnceWalletSerializer, serializers.ListField, UpperCaseField]


def test_a_plain_serializer_gives_every_instance_fields_of_its_own_and_keeps_the_template_unbound():
    first, second = TransferInputSerializer(), TransferInputSerializer()
    for name in first.fields:
        assert first.fields[name] is not second.fields[name]
        assert first.fields[name].parent is first
    assert not any(field.field_name for field in TransferInputSerializer._fields_template.values())


def test_a_setting_given_to_one_instances_field_stays_with_that_instance():
    # As payments' top-up gives its amount field the configured maximum, per instance.
    first = TransferInputSerializer()
    first.fields["amount"].max_amount = Decimal("1.00")
    with pytest.raises(serializers.ValidationError):
        first.fields["amount"].run_validation("5.00")
    assert TransferInputSerializer().fields["amount"].run_validation("5.00") == Decimal("5.00")
    assert TransferInputSerializer._fields_template["amount"].max_amount is None
