import factory

from accounts.models import User
from core.roles import UserType

DEFAULT_PASSWORD = "Str0ng-Pass!word"


class UserFactory(factory.django.DjangoModelFactory):
    """A user with its wallet (opened by the ledger when the user is saved). Password: DEFAULT_PASSWORD."""

    class Meta:
        model = User

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    phone_number = factory.Sequence(lambda n: f"+9198{n:08d}")
    # An established account whose number is proved; claims without proof pass phone_verified=False.
    phone_verified = True
    user_type = UserType.CLIENT
    # Hashed before the insert: one write, and the account starts at token_version 0.
    password = factory.django.Password(DEFAULT_PASSWORD)


class AdminFactory(UserFactory):
    username = factory.Sequence(lambda n: f"admin{n}")
    user_type = UserType.ADMIN
    is_staff = True
    is_superuser = True


class DistributorFactory(UserFactory):
    username = factory.Sequence(lambda n: f"distributor{n}")
    user_type = UserType.DISTRIBUTOR


class RetailerFactory(UserFactory):
    username = factory.Sequence(lambda n: f"retailer{n}")
    user_type = UserType.RETAILER
    parent = factory.SubFactory(DistributorFactory)


class ClientFactory(UserFactory):
    username = factory.Sequence(lambda n: f"client{n}")
    user_type = UserType.CLIENT
