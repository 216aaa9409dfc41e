"""core.precompiled: a query compiled once answers what the plain queryset answers, on every call."""

import pytest
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from accounts.selectors import UserNotFound, find_user
from accounts.tests.factories import ClientFactory, DistributorFactory, RetailerFactory
from accounts.tokens import VersionedJWTAuthentication, _user_with_wallet, token_pair_for
from core.precompiled import PrecompiledQuery
from wallet import services
from wallet.models import SystemWallet, Wallet

pytestmark = pytest.mark.django_db


def _fields(instance):
    return {field.attname: getattr(instance, field.attname) for field in instance._meta.concrete_fields}


def test_a_precompiled_query_answers_what_the_queryset_answers_for_each_value():
    people = [ClientFactory(), RetailerFactory(), DistributorFactory()]
    query = PrecompiledQuery(lambda marker: User.objects.select_related("wallet").filter(pk=marker), -1)
    for person in people:
        expected = User.objects.select_related("wallet").get(pk=person.pk)
        with CaptureQueriesContext(connection) as queries:
            (loaded,) = query.fetch(person.pk)
            wallet = loaded.wallet  # loaded by the join: no query of its own
        assert len(queries) == 1
        assert _fields(loaded) == _fields(expected)
        assert _fields(wallet) == _fields(expected.wallet)
        assert wallet.user is loaded
        assert not loaded._state.adding and loaded._state.db == "default"
    assert query.fetch(max(p.pk for p in people) + 1) == []


def test_a_user_without_a_wallet_is_loaded_as_the_orm_loads_it():
    person = ClientFactory()
    Wallet.objects.filter(user=person).delete()
    query = PrecompiledQuery(lambda marker: User.objects.select_related("wallet").filter(pk=marker), -1)
    (loaded,) = query.fetch(person.pk)
    with pytest.raises(User.wallet.RelatedObjectDoesNotExist), CaptureQueriesContext(connection) as queries:
        loaded.wallet
    assert len(queries) == 0  # the join said "none": no second look


def test_a_marker_must_reach_the_sql_exactly_once():
    with pytest.raises(ValueError, match="exactly once"):
        PrecompiledQuery(lambda marker: User.objects.filter(pk=-1), -2).fetch(1)
    with pytest.raises(ValueError, match="exactly once"):
        PrecompiledQuery(lambda marker: User.objects.filter(pk=marker, parent_id=marker), -3).fetch(1)


@pytest.mark.django_db(transaction=True)
def test_a_lock_query_outside_a_transaction_is_refused_on_every_call():
    """As the ORM refuses it (where the database can lock rows at all), also once compiled."""
    person = ClientFactory()
    query = PrecompiledQuery(lambda marker: Wallet.objects.select_for_update().filter(user_id=marker), -1)
    with transaction.atomic():
        assert [wallet.user_id for wallet in query.fetch(person.pk)] == [person.pk]
    if connection.features.has_select_for_update:
        with pytest.raises(TransactionManagementError):
            query.fetch(person.pk)
    else:
        assert len(query.fetch(person.pk)) == 1


def test_the_wallets_lock_answers_the_plain_lock_query_for_each_shape():
    people = [ClientFactory() for _ in range(6)]
    wallet_ids = [person.wallet.pk for person in people]
    user_ids = [person.pk for person in people]
    shapes = [
        (user_ids[:1], []),
        ([user_ids[3], user_ids[1]], []),
        ([user_ids[2], user_ids[2]], []),  # the same wallet named twice
        ([], [wallet_ids[4]]),
        ([user_ids[5]], [wallet_ids[0], wallet_ids[5]]),
        (user_ids, []),  # beyond the precompiled sizes
        ([], wallet_ids[:5]),
        (user_ids[:1], wallet_ids[1:6]),
    ]
    for users, wallets in shapes:
        with transaction.atomic():
            locked = services.wallets_for_update(user_ids=users, wallet_ids=wallets)
        expected = sorted({*wallets, *(w for w, u in zip(wallet_ids, user_ids, strict=True) if u in users)})
        assert [wallet.pk for wallet in locked] == expected
        assert all(wallet.user.pk == wallet.user_id for wallet in locked)


def test_authentication_loads_the_tokens_user_with_its_wallet_in_one_query(rf):
    person = RetailerFactory()
    request = rf.get("/api/wallet/balance/", HTTP_AUTHORIZATION=f"Bearer {token_pair_for(person)['access']}")
    with CaptureQueriesContext(connection) as queries:
        user, _token = VersionedJWTAuthentication().authenticate(request)
        balance = user.wallet.balance
    assert len(queries) == 1
    assert user.pk == person.pk and _fields(user) == _fields(User.objects.get(pk=person.pk))
    assert balance == Wallet.objects.get(user=person).balance


@pytest.mark.parametrize("user_id", ["not a number", "", str(2**63), "-1"])
def test_a_token_naming_no_account_is_nobody_not_an_error(user_id):
    with pytest.raises(User.DoesNotExist):
        _user_with_wallet(id=user_id)


def test_a_phone_names_its_verified_holder_only():
    holder = ClientFactory(phone_number="+919800000011", phone_verified=True)
    ClientFactory(phone_number="+919800000012", phone_verified=False)
    assert find_user(phone_number="+919800000011") == holder
    for phone in ("+919800000012", "+919800000013"):
        with pytest.raises(UserNotFound):
            find_user(phone_number=phone, field="to_phone_number")


def test_a_system_wallet_is_never_locked_as_a_user_wallet():
    """The treasury is never locked by a money request (its balance is derived): naming its id
    locks nothing, in a small call and a large one alike."""
    person = ClientFactory()
    treasury = services.system_wallet(code=SystemWallet.TREASURY)
    for wallet_ids in ([treasury.pk], [treasury.pk, *(ClientFactory().wallet.pk for _ in range(5))]):
        with transaction.atomic():
            locked = services.wallets_for_update(user_ids=[person.pk], wallet_ids=wallet_ids)
        assert treasury.pk not in [wallet.pk for wallet in locked]
        assert person.wallet.pk in [wallet.pk for wallet in locked]


def test_first_is_the_one_row_or_none():
    person = ClientFactory()
    query = PrecompiledQuery(lambda marker: User.objects.filter(pk=marker), -1)
    assert _fields(query.first(person.pk)) == _fields(User.objects.get(pk=person.pk))
    assert query.first(person.pk + 1000) is None
