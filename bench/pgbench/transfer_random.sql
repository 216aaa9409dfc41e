-- Scenario 2's work in raw SQL: a transfer of 1.00 between two random client wallets.
-- Variables (pgbench -D): first, last = the clients' wallet id range (contiguous).
\set a random(:first, :last)
\set b :first + ((:a - :first + random(1, :last - :first)) % (:last - :first + 1))
BEGIN;
SELECT id FROM wallet_wallet WHERE id IN (:a, :b) ORDER BY id FOR UPDATE;
UPDATE wallet_wallet SET balance = balance - 1.00, last_entry = last_entry + 1, updated_at = now() WHERE id = :a
    RETURNING balance AS from_after, last_entry AS from_entry \gset
UPDATE wallet_wallet SET balance = balance + 1.00, last_entry = last_entry + 1, updated_at = now() WHERE id = :b
    RETURNING balance AS to_after, last_entry AS to_entry \gset
INSERT INTO wallet_transfer (from_wallet_id, to_wallet_id, amount, kind, status, remarks, from_balance_after,
                             to_balance_after, from_entry, to_entry, created_at, updated_at, finalized_at)
VALUES (:a, :b, 1.00, 'TRANSFER', 'POSTED', 'pgbench ceiling', :from_after, :to_after, :from_entry, :to_entry, now(), now(), now());
END;
