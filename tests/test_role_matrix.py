"""Moved to tests/security/test_authorisation.py (the attacks the project withstands, a module per
family). Kept only so that code importing the matrix from here, written before the move, still
imports it; it holds no tests. Import from tests.security.test_authorisation instead."""

from tests.security.test_authorisation import ALLOWED, MATRIX, ROLES  # noqa: F401
