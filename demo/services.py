"""Demo data for a first run: people of every role, funded wallets, margins, the plan catalogue
and a few recharges, all created through the services (money only through wallet.services).

Idempotent: users are found by username, each money movement carries a fixed idempotency key and
is skipped when a transfer with that key exists, purchases are idempotent on their key. A second
run creates nothing and moves no money.
"""

from dataclasses import dataclass, field
from decimal import Decimal

from django.contrib.auth.hashers import check_password

from accounts import services as accounts
from accounts.margins import set_margin
from accounts.models import User, UserMargin
from core.roles import UserType
from plans.models import RechargePlan
from plans.services import load_catalogue
from purchases import services as purchases
from purchases.gateways import SandboxGateway
from wallet import services as ledger
from wallet.models import Transfer

ADMIN_PASSWORD = "Admin-Demo-2024!"
PASSWORD = "Demo-Pass-2024!"

# username, role, phone, parent, margin %, funding (from the admin, or from the parent for a retailer)
PEOPLE = [
    ("admin", UserType.ADMIN, "+917000000001", None, None, None),
    ("distributor_north", UserType.DISTRIBUTOR, "+917000000011", None, "4.00", "50000.00"),
    ("distributor_south", UserType.DISTRIBUTOR, "+917000000012", None, "3.50", "30000.00"),
    ("retailer_delhi", UserType.RETAILER, "+917000000021", "distributor_north", "2.50", "5000.00"),
    ("retailer_lucknow", UserType.RETAILER, "+917000000022", "distributor_north", "2.00", "3000.00"),
    ("retailer_chennai", UserType.RETAILER, "+917000000023", "distributor_south", "2.75", "4000.00"),
    ("client_asha", UserType.CLIENT, "+917000000031", None, None, "1000.00"),
    ("client_ravi", UserType.CLIENT, "+917000000032", None, None, "500.00"),
]

# buyer, plan code, number recharged
PURCHASES = [
    ("retailer_delhi", "jio-pre-299", "+919812345678"),
    ("retailer_delhi", "airtel-pre-199", "+919812345679"),
    ("retailer_lucknow", "vi-pre-299", "+919812345680"),
    ("retailer_chennai", "bsnl-pre-199", "+919812345681"),
    ("client_asha", "airtel-data-49", "+919812345682"),
    ("retailer_delhi", "jio-pre-349", SandboxGateway.FAILS),  # the operator declines: money returned
    ("retailer_chennai", "airtel-pre-299", SandboxGateway.PENDING_THEN_SUCCESS),  # for settle_pending_purchases
]


def published_password(role) -> str:
    return ADMIN_PASSWORD if role == UserType.ADMIN else PASSWORD


def accounts_with_published_passwords() -> list[str]:
    """Usernames of the active demo accounts whose password is still the one published here.

    Read with the bare hasher function: User.check_password would re-hash and save the row on a
    match with an outdated hasher, and a check must not write."""
    published = {username: published_password(role) for username, role, *_ in PEOPLE}
    rows = User.objects.filter(username__in=published, is_active=True).values_list("username", "password")
    return sorted(username for username, encoded in rows if check_password(published[username], encoded))


@dataclass
class DemoReport:
    users_created: list = field(default_factory=list)
    transfers_made: int = 0
    margins_set: int = 0
    purchases_made: int = 0
    catalogue: object = None
    logins: list = field(default_factory=list)


def setup_demo_data() -> DemoReport:
    report = DemoReport()
    report.catalogue = load_catalogue()
    users = {}
    for username, role, phone, parent, _margin, _funding in PEOPLE:
        user = User.objects.filter(username=username).first()
        if user is None:
            user = accounts.create_user(
                username=username,
                password=published_password(role),
                email=f"{username}@demo.example.com",
                user_type=role,
                phone_number=phone,
                phone_verified=True,  # set by the demo's admin: vouched for
                first_name=username.split("_")[-1].capitalize(),
                last_name=UserType(role).label,
                parent=users.get(parent),
            )
            report.users_created.append(username)
        users[username] = user
        password = published_password(role)
        if username not in report.users_created and not user.check_password(password):
            password = "(not the demo password: account existed before)"
        report.logins.append((username, user.email, password, user.phone_number, role))
    admin = users["admin"]
    for username, _role, _phone, parent, margin, funding in PEOPLE:
        user = users[username]
        if margin is not None and _set_margin(user=user, margin=Decimal(margin), set_by=users.get(parent) or admin):
            report.margins_set += 1
        if funding is not None:
            funded = _fund_once(user=user, amount=Decimal(funding), parent=users.get(parent), admin=admin)
            report.transfers_made += funded
    for index, (username, plan_code, number) in enumerate(PURCHASES):
        key = f"demo-purchase-{index}"
        buyer = users[username]
        if buyer.purchases.filter(idempotency_key=key).exists():
            continue
        plan = RechargePlan.objects.get(code=plan_code)
        purchases.purchase_recharge(
            buyer=buyer, plan_id=plan.pk, mobile_number=number, idempotency_key=key, gateway=SandboxGateway()
        )
        report.purchases_made += 1
    return report


def _set_margin(*, user, margin, set_by) -> bool:
    current = UserMargin.objects.filter(user=user).values_list("margin_percentage", flat=True).first()
    if current == margin:
        return False
    set_margin(user=user, margin_percentage=margin, set_by=set_by)
    return True


def _fund_once(*, user, amount, parent, admin) -> int:
    """Fund `user` once: a retailer from its distributor (TRANSFER), anyone else from the admin
    (FUND). The fixed key marks the movement as done."""
    key = f"demo-funding-{user.username}"
    if Transfer.objects.filter(idempotency_key=key).exists():
        return 0
    if parent is not None:
        ledger.transfer_funds(
            sender=parent, receiver=user, amount=amount, remarks="Demo: float for the shop", idempotency_key=key
        )
    else:
        ledger.fund_wallet(
            user=user, amount=amount, remarks="Demo: initial funding", initiated_by=admin, idempotency_key=key
        )
    return 1
