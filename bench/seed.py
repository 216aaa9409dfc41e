"""The benchmark's population, written through the services' bulk paths (never by hand).

- an admin; `distributors` distributors, the first of them the *hot* one with `hot_retailers`
  retailers, each other with `retailers_each`; clients make up the rest of `users`;
- every user wallet funded by the treasury (`pay_out_in_bulk`, kind FUND), so each balance has
  its journal row;
- the journal grown to `journal` rows by the hot distributor paying its own retailers in batches,
  nine payouts in ten to the same retailer (the busy wallet whose history scenario 6 pages through);
- margins for distributors and retailers (`set_margin`) and the plan catalogue (`load_catalogue`).

Needs Django set up against the benchmark database. Returns a `Population` the load generator uses.
"""

import time
from dataclasses import asdict, dataclass
from decimal import Decimal

FUNDING = Decimal("100000.00")  # each user's starting balance: no scenario can run a wallet dry
HOT_FUNDING_ROUNDS = 20  # the hot distributor gets 20 x 100,000.00 (the per-transfer maximum)
HISTORY_BATCH = 20_000


@dataclass
class Population:
    admin_id: int
    hot_distributor_id: int
    busy_retailer_id: int
    hot_retailer_ids: list
    retailer_ids: list
    client_ids: list
    client_phones: list
    hot_retailer_phones: list
    plan_ids: list
    seconds: float

    def as_dict(self):
        return asdict(self)


def phone(n: int) -> str:
    return f"+9170{n:08d}"


def seed(*, users=10_000, distributors=10, hot_retailers=1000, retailers_each=100, journal=1_000_000, log=print):
    hot_retailers = min(hot_retailers, users // 5)  # a small smoke run keeps the same shape
    retailers_each = min(retailers_each, users // 50)
    from django.contrib.auth.hashers import make_password
    from django.db import connection

    from accounts import margins
    from accounts.models import User
    from accounts.services import create_user, create_users_in_bulk
    from core.roles import KycLevel, UserType
    from plans.models import RechargePlan
    from plans.services import load_catalogue
    from wallet import services as ledger

    started = time.monotonic()
    # Numbers set by the seeding admin are vouched for (verified): the load pays clients by phone.
    admin = create_user(
        username="bench-admin", password=None, user_type=UserType.ADMIN, phone_number=phone(0), phone_verified=True
    )
    password = make_password("bench-password-not-used")  # hashed once: PBKDF2 per user would take an hour
    numbers = iter(range(1, users + 1))

    dist_rows = [
        {
            "username": f"dist{i}",
            "user_type": UserType.DISTRIBUTOR,
            "phone_number": phone(next(numbers)),
            "phone_verified": True,
        }
        for i in range(distributors)
    ]
    dists = create_users_in_bulk(users=dist_rows, password_hash=password)
    hot = dists[0]
    retailer_rows = []
    for index, dist in enumerate(dists):
        for j in range(hot_retailers if index == 0 else retailers_each):
            retailer_rows.append(
                {
                    "username": f"ret{index}-{j}",
                    "user_type": UserType.RETAILER,
                    "parent": dist,
                    "phone_number": phone(next(numbers)),
                    "phone_verified": True,
                }
            )
    retailers = create_users_in_bulk(users=retailer_rows, password_hash=password)
    client_count = users - 1 - len(dists) - len(retailers)
    if client_count < 2:
        raise SystemExit(f"--users {users} is too few for {len(dists)} distributors and {len(retailers)} retailers")
    clients = create_users_in_bulk(
        users=[
            {
                "username": f"client{i}",
                "email": f"client{i}@bench.example.com",
                "phone_number": phone(next(numbers)),
                "phone_verified": True,
                # Full KYC: a starting balance of 100,000.00 is within its limits (2,00,000 held and
                # loaded a month); a minimum-KYC wallet holds at most 10,000 (wallet/limits.py).
                "kyc_level": KycLevel.FULL,
            }
            for i in range(client_count)
        ],
        password_hash=password,
    )
    log(f"  {User.objects.count()} users, each with a wallet")

    everyone = [*dists, *retailers, *clients]
    ledger.pay_out_in_bulk(
        payments=[(user.pk, FUNDING) for user in everyone],
        kind=ledger.Kind.FUND,
        remarks="Benchmark funding",
        initiated_by=admin,
    )
    ledger.pay_out_in_bulk(
        payments=[(hot.pk, FUNDING)] * HOT_FUNDING_ROUNDS,
        kind=ledger.Kind.FUND,
        remarks="Benchmark funding (hot distributor)",
        initiated_by=admin,
    )

    for dist in dists:
        margins.set_margin(user=dist, margin_percentage="2.00", set_by=admin)
    for retailer in retailers:
        margins.set_margin(user=retailer, margin_percentage="1.00", set_by=admin)

    hot_retailers_list = [r for r in retailers if r.parent_id == hot.pk]
    already = _journal_rows()
    remaining = max(0, journal - already)
    written = 0
    history_started = time.monotonic()
    while written < remaining:
        size = min(HISTORY_BATCH, remaining - written)
        # Most payouts go to one retailer: the busy wallet whose history scenario 6 pages through.
        payments = [
            (hot_retailers_list[0 if k % 10 else (written + k) % len(hot_retailers_list)].pk, "1.00")
            for k in range(size)
        ]
        written += ledger.pay_out_in_bulk(payer=hot, payments=payments, remarks="Daily payout")
    seconds = time.monotonic() - history_started
    log(f"  journal: {_journal_rows()} rows ({written} hot-distributor payouts in {seconds:.0f} s)")

    load_catalogue()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE") if connection.vendor == "postgresql" else None

    plan_ids = list(RechargePlan.objects.filter(is_active=True).order_by("pk").values_list("pk", flat=True))
    return Population(
        admin_id=admin.pk,
        hot_distributor_id=hot.pk,
        busy_retailer_id=hot_retailers_list[0].pk,
        hot_retailer_ids=[r.pk for r in hot_retailers_list],
        retailer_ids=[r.pk for r in retailers],
        client_ids=[c.pk for c in clients],
        client_phones=[c.phone_number for c in clients],
        hot_retailer_phones=[r.phone_number for r in hot_retailers_list],
        plan_ids=plan_ids,
        seconds=time.monotonic() - started,
    )


def _journal_rows() -> int:
    from wallet.models import Transfer

    return Transfer.objects.count()
