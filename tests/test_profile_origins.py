"""bench/profile_request.py --by-origin: each profiled function is charged to whose code it is, so the
floor a Django + DRF + simplejwt request stands on is told apart from what the view's own code adds."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.profile_request import origin_of  # noqa: E402

SITE = str(ROOT / ".venv/lib/python3.11/site-packages")


@pytest.mark.parametrize(
    ("filename", "function", "origin"),
    [
        ("~", "<method 'execute' of 'psycopg2.extensions.cursor' objects>", "psycopg2"),
        (f"{SITE}/psycopg2/extras.py", "execute_values", "psycopg2"),
        (f"{SITE}/rest_framework_simplejwt/authentication.py", "authenticate", "simplejwt"),
        (f"{SITE}/jwt/api_jws.py", "decode_complete", "simplejwt"),
        (f"{SITE}/rest_framework/views.py", "dispatch", "DRF"),
        (f"{SITE}/django/db/models/query.py", "filter", "Django"),
        (f"{SITE}/kombu/messaging.py", "publish", "other libraries"),
        (str(ROOT / "wallet/services.py"), "transfer_funds", "the project's own code"),
        (str(ROOT / "bench/profile_request.py"), "call", "this script's loop"),
        ("/usr/lib/python3.11/json/decoder.py", "decode", "Python"),
        ("~", "<built-in method builtins.isinstance>", "Python"),
    ],
)
def test_each_function_is_charged_to_whose_code_it_is(filename, function, origin):
    assert origin_of(filename, function, own="the project").startswith(origin)
