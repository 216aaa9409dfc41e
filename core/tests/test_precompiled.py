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


# --- writes: the idempotency key's claim and stored answer --------------------------------------


def _record_row(pk):
    from core.models import IdempotencyRecord

    return _fields(IdempotencyRecord.objects.get(pk=pk))


def _comparable(row):
    # Its own id and key; created_at is auto_now_add, which the ORM sets to the time of the call.
    return {**row, "id": None, "key": None, "created_at": None}


def test_a_precompiled_insert_writes_the_row_the_orm_writes_and_refuses_a_duplicate_as_it_does():
    from datetime import UTC, datetime

    from django.db import IntegrityError

    from core.models import IdempotencyRecord
    from core.precompiled import PrecompiledInsert

    person = ClientFactory()
    at = datetime(2026, 12, 1, 8, 59, 3, 123456, tzinfo=UTC)
    insert = PrecompiledInsert(
        IdempotencyRecord, "user", "key", "endpoint", "fingerprint", "state", "created_at", "locked_at"
    )
    fields = {"endpoint": "POST x", "fingerprint": "f" * 64, "state": "IN_PROGRESS", "created_at": at, "locked_at": at}

    pk = insert.insert(person.pk, "key-1", *fields.values())
    orm = IdempotencyRecord.objects.create(user=person, key="key-2", **fields)

    ours, theirs = _record_row(pk), _record_row(orm.pk)
    assert _comparable(ours) == _comparable(theirs)
    assert ours["locked_at"] == ours["created_at"] == at and ours["user_id"] == person.pk
    # Stored in the database's own form: matched exactly by the ORM's lookup (on SQLite a datetime is
    # text, and one written in another form would read back the same but never match).
    assert IdempotencyRecord.objects.filter(pk=pk, locked_at=at, created_at=at).exists()
    with pytest.raises(IntegrityError), transaction.atomic():
        insert.insert(person.pk, "key-1", *fields.values())


def test_insert_many_writes_the_rows_bulk_create_writes_in_as_few_statements_as_the_database_takes(monkeypatch):
    from datetime import UTC, datetime

    from core.models import IdempotencyRecord
    from core.precompiled import PrecompiledInsert

    person = ClientFactory()
    at = datetime(2026, 12, 1, 22, 0, 0, 654321, tzinfo=UTC)
    names = ("user", "key", "endpoint", "fingerprint", "state", "created_at", "locked_at")
    insert = PrecompiledInsert(IdempotencyRecord, *names)
    values = [(f"k{n}", f"POST {n}", "f" * n, "COMPLETED", at, at) for n in range(1, 6)]

    with CaptureQueriesContext(connection) as one_go:
        insert.insert_many([(person.pk, *row) for row in values])
    IdempotencyRecord.objects.bulk_create(
        IdempotencyRecord(user=person, **dict(zip(names[1:], (f"orm-{key}", *rest), strict=True)))
        for key, *rest in values
    )

    ours = [_fields(r) for r in IdempotencyRecord.objects.exclude(key__startswith="orm-").order_by("key")]
    theirs = [_fields(r) for r in IdempotencyRecord.objects.filter(key__startswith="orm-").order_by("key")]
    assert [row["key"] for row in ours] == ["k1", "k2", "k3", "k4", "k5"]
    assert [_comparable(row) for row in ours] == [_comparable(row) for row in theirs]
    assert all(row["user_id"] == person.pk and row["created_at"] == row["locked_at"] == at for row in ours)
    assert len(one_go) == 1
    # A database that takes fewer parameters per statement (SQLite) gets the rows in batches.
    monkeypatch.setattr(connection.ops, "bulk_batch_size", lambda fields, objs: 2)
    with CaptureQueriesContext(connection) as batched:
        insert.insert_many([(person.pk, f"b{n}", "POST b", "f", "COMPLETED", at, at) for n in range(5)])
    assert len(batched) == 3 and IdempotencyRecord.objects.filter(key__startswith="b").count() == 5
    with pytest.raises(NotImplementedError):
        PrecompiledInsert(IdempotencyRecord, *names, unless_taken=("user", "key")).insert_many([])


def test_a_precompiled_insert_unless_taken_writes_a_free_key_and_leaves_a_taken_one_as_it_was():
    from datetime import UTC, datetime

    from django.db import IntegrityError

    from core.models import IdempotencyRecord
    from core.precompiled import PrecompiledInsert

    person = ClientFactory()
    at = datetime(2026, 12, 1, 9, 0, 0, 1, tzinfo=UTC)
    names = ("user", "key", "endpoint", "fingerprint", "state", "created_at", "locked_at")
    insert_unless_taken = PrecompiledInsert(IdempotencyRecord, *names, unless_taken=("user", "key"))

    first = insert_unless_taken.insert(person.pk, "k", "POST first", "f", "COMPLETED", at, at)
    again = insert_unless_taken.insert(person.pk, "k", "POST again", "g", "COMPLETED", at, at)
    other = insert_unless_taken.insert(person.pk, "other", "POST other", "h", "COMPLETED", at, at)

    assert isinstance(first, int) and again is None and isinstance(other, int) and other != first
    assert IdempotencyRecord.objects.get(key="k").endpoint == "POST first"
    assert IdempotencyRecord.objects.count() == 2
    # Any other refusal is still an error, on SQLite too (whose INSERT OR IGNORE would skip the row).
    with pytest.raises(IntegrityError), transaction.atomic():
        insert_unless_taken.insert(person.pk, "free", "POST x", "f", None, at, at)
    assert not IdempotencyRecord.objects.filter(key="free").exists()
    not_a_unique_key = PrecompiledInsert(IdempotencyRecord, *names, unless_taken=("key",))
    with pytest.raises(ValueError, match="no unique constraint"):
        not_a_unique_key.insert(person.pk, "k2", "POST x", "f", "COMPLETED", at, at)


def test_a_precompiled_update_changes_what_the_orm_update_changes_with_the_same_values():
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from core.models import IdempotencyRecord
    from core.precompiled import PrecompiledUpdate

    person = ClientFactory()
    locked = datetime(2026, 12, 1, 8, 0, 0, 654321, tzinfo=UTC)
    rows = [
        IdempotencyRecord.objects.create(
            user=person, key=f"k{i}", endpoint="e", fingerprint="f", created_at=locked, locked_at=locked
        ).pk
        for i in range(3)
    ]
    update = PrecompiledUpdate(
        IdempotencyRecord,
        set_names=("state", "response_status", "response_body", "completed_at"),
        where_names=("id", "state", "locked_at"),
    )
    body = {"amount": Decimal("150.50"), "at": locked, "lines": [{"n": 1}, None], "text": '₹ "quoted"'}
    done = locked + timedelta(seconds=1)
    answer = ("COMPLETED", 201, body, done)

    assert update.update(*answer, rows[0], "IN_PROGRESS", locked) == 1
    orm = IdempotencyRecord.objects.filter(pk=rows[1], state="IN_PROGRESS", locked_at=locked).update(
        state="COMPLETED", response_status=201, response_body=body, completed_at=done
    )
    assert orm == 1
    assert IdempotencyRecord.objects.filter(pk=rows[0], completed_at=done).exists()
    assert _comparable(_record_row(rows[0])) == _comparable(_record_row(rows[1]))
    assert _record_row(rows[0])["response_body"] == {
        "amount": "150.50",
        "at": "2026-12-01T08:00:00.654Z",
        **{"lines": [{"n": 1}, None], "text": '₹ "quoted"'},
    }
    # Another lock time, or a state already moved on, matches nothing.
    assert update.update(*answer, rows[2], "IN_PROGRESS", locked + timedelta(microseconds=1)) == 0
    assert update.update(*answer, rows[0], "IN_PROGRESS", locked) == 0
    assert _record_row(rows[2])["state"] == "IN_PROGRESS"
    # None is stored as SQL NULL, as the ORM stores it.
    assert update.update("COMPLETED", None, None, None, rows[2], "IN_PROGRESS", locked) == 1
    assert IdempotencyRecord.objects.filter(
        pk=rows[2], response_body__isnull=True, response_status__isnull=True
    ).exists()


def test_a_failed_precompiled_write_marks_the_transaction_for_rollback_as_the_orm_does():
    from django.db import DatabaseError
    from django.utils import timezone

    from core.models import IdempotencyRecord
    from core.precompiled import PrecompiledUpdate

    now = timezone.now()
    record = IdempotencyRecord.objects.create(
        user=ClientFactory(), key="k", endpoint="e", fingerprint="f", created_at=now, locked_at=now
    )
    update = PrecompiledUpdate(IdempotencyRecord, set_names=("response_status",), where_names=("id",))
    marked = []
    with pytest.raises(DatabaseError), transaction.atomic():
        try:
            update.update(-5, record.pk)  # a positive small integer column refuses -5
        finally:
            marked.append(transaction.get_connection().needs_rollback)
    assert marked == [True]
    with pytest.raises(ValueError, match="never on None"):
        update.update(200, None)


# --- an account by email (iexact) or id: find_user ------------------------------------------------


def test_an_account_by_email_is_found_as_the_orm_finds_it_in_any_case_and_wildcards_are_literal():
    # SQLite compares iexact with LIKE: an underscore or a percent sign in the address must match
    # only itself, as the ORM escapes it, never any character.
    ClientFactory(email="axbyc@example.com")  # first: an unescaped LIKE would find it before the other
    exact = ClientFactory(email="a_b%c@example.com")
    for asked in ("a_b%c@example.com", "A_B%C@EXAMPLE.COM", "  a_b%c@example.com "):
        assert find_user(email=asked) == exact
        assert User.objects.filter(email__iexact=asked.strip()).get() == exact
    for missing in ("a_b%c@example.co", "axb%c@example.com", "a%", "%", "_"):
        assert not User.objects.filter(email__iexact=missing).exists()
        with pytest.raises(UserNotFound):
            find_user(email=missing)


def test_an_account_by_id_is_found_in_one_query_and_an_unknown_id_is_user_not_found():
    person = RetailerFactory()
    with CaptureQueriesContext(connection) as queries:
        assert find_user(user_id=person.pk) == person
    assert len(queries) == 1
    with pytest.raises(UserNotFound):
        find_user(user_id=person.pk + 1000)


def test_a_precompiled_values_list_answers_the_querysets_rows_with_its_converters():
    from decimal import Decimal

    from wallet.models import Transfer

    admin, people = ClientFactory(), [ClientFactory(), ClientFactory()]
    for amount, person in zip(("1.50", "2.25"), people, strict=True):
        services.fund_wallet(user=person, amount=amount, initiated_by=admin)

    def rows(wallet_id):
        return Transfer.objects.filter(to_wallet_id=wallet_id).order_by("-pk").values_list("pk", "amount", "created_at")

    query = PrecompiledQuery(rows, -1)
    for person in people:
        expected = list(rows(person.wallet.pk))
        assert query.fetch(person.wallet.pk) == expected
        assert isinstance(expected[0][1], Decimal)  # the amount converted as the ORM converts it


@pytest.mark.parametrize("shape", ["flat", "values"])
def test_only_models_or_a_values_list_of_fields_are_precompiled(shape):
    def build(marker):
        queryset = Wallet.objects.filter(pk=marker)
        return queryset.values_list("pk", flat=True) if shape == "flat" else queryset.values("pk")

    with pytest.raises(ValueError, match="values_list"):
        PrecompiledQuery(build, -1).fetch(1)
