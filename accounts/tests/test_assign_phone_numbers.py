import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from accounts.tests.factories import ClientFactory

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def run(lines, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        call_command("assign_phone_numbers", stdout=out, stderr=err)
    except SystemExit as exit_:
        code = exit_.code
    return code, out.getvalue(), err.getvalue()


def test_assigns_normalised_numbers_by_username_or_email(monkeypatch):
    alice = ClientFactory(username="alice", phone_number=None)
    bob = ClientFactory(username="bob", email="bob@example.com", phone_number=None)
    code, out, _ = run(["# header comment", "alice,9999999999", "", "BOB@example.com, +1234567890"], monkeypatch)
    assert code == 0
    assert "2 assigned, 0 unchanged, 0 failed" in out
    alice.refresh_from_db(), bob.refresh_from_db()
    assert (alice.phone_number, bob.phone_number) == ("+919999999999", "+1234567890")


def test_reads_a_file_argument(tmp_path):
    alice = ClientFactory(username="alice", phone_number=None)
    source = tmp_path / "numbers.csv"
    source.write_text("alice,8888888888\n")
    call_command("assign_phone_numbers", str(source), stdout=io.StringIO())
    alice.refresh_from_db()
    assert alice.phone_number == "+918888888888"


def test_each_bad_line_is_reported_changes_nothing_and_fails_the_run(monkeypatch):
    alice = ClientFactory(username="alice", phone_number="+917777777777")
    ClientFactory(username="carol", phone_number="+919999999999")
    code, out, err = run(
        [
            "alice,12",  # invalid number
            "nobody,8888888888",  # unknown user
            "alice,9999999999",  # taken by carol
            "alice",  # malformed
            "alice,8888888888,extra",  # malformed
        ],
        monkeypatch,
    )
    assert code == 1
    for line in range(1, 6):
        assert f"line {line}:" in err
    assert "0 assigned, 0 unchanged, 5 failed" in err
    alice.refresh_from_db()
    assert alice.phone_number == "+917777777777"


def test_good_lines_are_kept_when_others_fail(monkeypatch):
    alice = ClientFactory(username="alice", phone_number=None)
    code, _, err = run(["nobody,8888888888", "alice,9999999999"], monkeypatch)
    assert code == 1
    assert "1 assigned, 0 unchanged, 1 failed" in err
    alice.refresh_from_db()
    assert alice.phone_number == "+919999999999"


def test_reassigning_the_same_number_is_unchanged(monkeypatch):
    ClientFactory(username="alice", phone_number="+919999999999")
    code, out, _ = run(["alice,9999999999"], monkeypatch)
    assert code == 0 and "0 assigned, 1 unchanged" in out


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_bash_script_runs_the_command(tmp_path):
    # The script runs manage.py in another process: it needs a database both can see (not in-memory SQLite).
    from django.db import connection

    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    database_url = f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    ClientFactory(username="alice", phone_number=None)
    source = tmp_path / "numbers.csv"
    source.write_text("alice,9999999999\nnobody,8888888888\n")
    env = {**os.environ, "DATABASE_URL": database_url, "DEBUG": "true"}
    result = subprocess.run(
        [str(ROOT / "scripts" / "assign_phone_numbers.sh"), str(source)], env=env, capture_output=True, text=True
    )
    assert result.returncode == 1, result.stderr
    assert "1 assigned, 0 unchanged, 1 failed" in result.stderr
    assert "line 2:" in result.stderr
