"""What a prepared statement saves PostgreSQL: the server's CPU per statement, sent as text (parsed and
planned each time, as psycopg2 sends everything) against EXECUTEd after one PREPARE.

Runs authentication's user-with-wallet lookup and a money request's lock of two wallets, alternating the
two ways in rounds, on a seeded benchmark database (bench/run.py's), and reads the server process's CPU
from /proc (so run it on the database's own machine):

    .venv/bin/python bench/prepared_vs_text.py postgres://postgres@127.0.0.1:5432/fb_bench
"""

import argparse
import os
import time

import psycopg2

USER_WITH_WALLET = (
    "SELECT u.*, w.* FROM accounts_user u LEFT OUTER JOIN wallet_wallet w ON (u.id = w.user_id) WHERE u.id = %s LIMIT 1"
)
TWO_WALLETS_LOCKED = "SELECT * FROM wallet_wallet WHERE id IN (%s, %s) AND system_code IS NULL ORDER BY id FOR UPDATE"


def server_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database_url")
    parser.add_argument("--pairs", type=int, default=3000, help="statement pairs per round and way")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    connection = psycopg2.connect(args.database_url)
    cursor = connection.cursor()
    cursor.execute("SELECT pg_backend_pid(), min(id), max(id) FROM wallet_wallet WHERE user_id IS NOT NULL")
    pid, first, last = cursor.fetchone()
    cursor.execute("SELECT min(id), max(id) FROM accounts_user")
    first_user, last_user = cursor.fetchone()
    cursor.execute("PREPARE user_with_wallet AS " + USER_WITH_WALLET.replace("%s", "$1"))
    cursor.execute("PREPARE two_wallets_locked AS " + TWO_WALLETS_LOCKED.replace("%s", "$1", 1).replace("%s", "$2"))
    connection.commit()
    span, users = last - first + 1, last_user - first_user + 1
    for round_number in range(1, args.rounds + 1):
        for way in ("text", "prepared"):
            cpu_before, client_before = server_cpu_seconds(pid), time.process_time()
            for i in range(args.pairs):
                user, one, other = first_user + i % users, first + i % span, first + (i * 7 + 1) % span
                if way == "text":
                    cursor.execute(USER_WITH_WALLET, [user])
                    cursor.fetchall()
                    cursor.execute(TWO_WALLETS_LOCKED, [one, other])
                else:
                    cursor.execute("EXECUTE user_with_wallet(%s)", [user])
                    cursor.fetchall()
                    cursor.execute("EXECUTE two_wallets_locked(%s, %s)", [one, other])
                cursor.fetchall()
                connection.rollback()
            server = 1000 * (server_cpu_seconds(pid) - cpu_before) / args.pairs
            client = 1000 * (time.process_time() - client_before) / args.pairs
            print(
                f"round {round_number}, {way:8}: server {server:.3f} ms, client {client:.3f} ms per pair (and rollback)"
            )


if __name__ == "__main__":
    main()
