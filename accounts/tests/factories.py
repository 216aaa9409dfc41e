import factory

from accounts.models import User
from core.roles import UserType

DEFAULT_PASSWORD = "Str0ng-Pass!word"


class UserFactory(factory.django.DjangoModelFactory):
    """A user with its wallet (User.save creates it). Password: DEFAULT_PASSWORD."""

    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    phone_number = factory.Sequence(lambda n: f"+9198{n:08d}")
    user_type = UserType.CLIENT
    password = factory.PostGenerationMethodCall("set_password", DEFAULT_PASSWORD)

    @factory.post_generation
    def _save_password(obj, create, extracted, **kwargs):
        if create:
            obj.save(update_fields=["password"])


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
