-- Scenario 3's work in raw SQL: the hot distributor's wallet pays 1.00 to one of its retailers.
-- Variables (pgbench -D): hot = the distributor's wallet id; first, last = its retailers' wallet ids;
-- month = the current month's first instant (wallet.limits.month_start): the retailer's wallet counts
-- the load in its month's loads, as the ledger does (verify_ledger checks them).
\set b random(:first, :last)
BEGIN;
SELECT id FROM wallet_wallet WHERE id IN (:hot, :b) ORDER BY id FOR UPDATE;
UPDATE wallet_wallet SET balance = balance - 1.00, last_entry = last_entry + 1, updated_at = now() WHERE id = :hot
    RETURNING balance AS from_after, last_entry AS from_entry \gset
UPDATE wallet_wallet SET balance = balance + 1.00, last_entry = last_entry + 1,
    month_loads = CASE WHEN month_loads_since = CAST(:month AS timestamptz) THEN month_loads + 1.00 ELSE 1.00 END,
    month_loads_since = CAST(:month AS timestamptz), updated_at = now() WHERE id = :b
    RETURNING balance AS to_after, last_entry AS to_entry \gset
INSERT INTO wallet_transfer (from_wallet_id, to_wallet_id, amount, kind, status, remarks, from_balance_after,
                             to_balance_after, from_entry, to_entry, created_at, updated_at, finalized_at)
VALUES (:hot, :b, 1.00, 'TRANSFER', 'POSTED', 'pgbench ceiling', :from_after, :to_after, :from_entry, :to_entry, now(), now(), now());
END;
