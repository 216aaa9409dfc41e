#!/usr/bin/env bash
# Assign phone numbers quickly: `username_or_email,phone` lines from a file or standard input.
#   scripts/assign_phone_numbers.sh numbers.csv
#   echo "alice,9999999999" | scripts/assign_phone_numbers.sh
# Exits non-zero if any line failed (each failed line is reported and changes nothing).
set -euo pipefail
source_file="${1:--}"
if [[ "$source_file" != "-" ]]; then
  source_file="$(realpath -- "$source_file")"
fi
cd "$(dirname "$0")/.."
if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
exec "$PYTHON" manage.py assign_phone_numbers "$source_file"
