-- Scenario 2's work in raw SQL: a transfer of 1.00 between two random client wallets.
-- Variables (pgbench -D): first, last = the clients' wallet id range (contiguous).
\set a random(:first, :last)
\set b :first + ((:a - :first + random(1, :last - :first)) % (:last - :first + 1))
BEGIN;
SELECT id FROM wallet_wallet WHERE id IN (:a, :b) ORDER BY id FOR UPDATE;
UPDATE wallet_wallet SET balance = balance - 1.00, updated_at = now() WHERE id = :a RETURNING balance AS from_after \gset
UPDATE wallet_wallet SET balance = balance + 1.00, updated_at = now() WHERE id = :b RETURNING balance AS to_after \gset
INSERT INTO wallet_transfer (from_wallet_id, to_wallet_id, amount, kind, status, remarks, from_balance_after,
                             to_balance_after, created_at, updated_at, finalized_at)
VALUES (:a, :b, 1.00, 'TRANSFER', 'POSTED', 'pgbench ceiling', :from_after, :to_after, now(), now(), now());
END;
