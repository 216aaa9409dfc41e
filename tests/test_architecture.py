"""The rooms of the house (style.md): which app may import which, so that no two apps depend on each
other and the ledger's schema names no business app."""

import ast
from pathlib import Path

from django.db.migrations.loader import MigrationLoader

ROOT = Path(__file__).resolve().parent.parent
APPS = ["core", "accounts", "plans", "wallet", "purchases", "payments", "demo"]
# Each app's allowed imports of other apps: a layering (core at the bottom, demo data on top).
ALLOWED = {
    "core": set(),
    "accounts": {"core"},
    "plans": {"core", "accounts"},
    "wallet": {"core", "accounts"},
    "purchases": {"core", "accounts", "plans", "wallet"},
    # Money in from a payment provider: the wallet's credit, never the recharge business.
    "payments": {"core", "accounts", "wallet"},
    "demo": {"core", "accounts", "plans", "wallet", "purchases"},
}


def imported_apps(app):
    """Apps imported by `app`'s code (its tests and migrations aside)."""
    found = set()
    for path in (ROOT / app).rglob("*.py"):
        if {"tests", "migrations"} & set(path.relative_to(ROOT).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            found |= {name.split(".")[0] for name in names} & set(APPS)
    return found - {app}


def test_each_app_imports_only_the_apps_below_it():
    assert {app: imported_apps(app) - ALLOWED[app] for app in APPS} == {app: set() for app in APPS}


def test_the_ledgers_migrations_depend_on_no_business_app():
    graph = MigrationLoader(None, ignore_no_migrations=True).graph
    wallet_nodes = [node for node in graph.nodes if node[0] == "wallet"]
    depends_on = {parent[0] for node in wallet_nodes for parent in graph.node_map[node].parents}
    assert depends_on <= {"wallet", "accounts"}, depends_on
