-- bench/floor.sql: the floor bench/pipeline.py times the dbt build against (issue 6, "Benchmark").
--
-- The core queries of the finance DAG written by hand as one DuckDB script over the same raw.*
-- inputs the dbt sources read (ingest/raw_schema.py), with no staging views, no tests, no marts
-- beyond the four results below, no FX and no incremental / frozen-period machinery:
--   1. floor_fees         fee F per captured payment: the merchant price in force at captured_at
--                         (int_payment_fees)
--   2. floor_commissions  commission per payment and agent level, all three models of
--                         commission.md (markup chain, percentage, fixed), tree / models / cost
--                         prices in force at captured_at (int_commission_levels)
--   3. floor_statements   statement aggregates per merchant, day and currency: gross, refunds,
--                         fees (refunds give the fee back pro rata), net, counts
--                         (int_refund_fee_reversals + int_settlement_items + the activity part of
--                         fct_settlement_statements)
--   4. floor_recon        captured payments <-> PSP CSV payment lines by channel reference,
--                         classified (int_recon_* + fct_reconciliation_matches, exact part)
-- Money is integer math on HUGEINT, rounding half away from zero exactly as money.md (the same
-- formulas as dbt_project/macros/money.sql), so the amounts equal the dbt models' amounts.
--
-- Simplifications, all of which make the floor cheaper (a lower floor, a higher ratio):
--   - statements are per calendar day in the transaction's own currency: no weekly / monthly
--     cycles, no FX conversion to the settlement currency, no opening / closing balances, no
--     chargebacks, payouts or adjustments, no closed-period freezing;
--   - commission: no pro-rata reversal on refunds, no platform revenue / conservation rows;
--   - recon: only the exact-reference step (no payout batches, chain logs or fuzzy matching),
--     and `missing` ignores the settlement window (no `pending`).
--
-- One deliberate algorithmic shortcut in (2): dbt walks the agent tree once per payment (a
-- recursive CTE seeded with every payment). In force-ness of every dated row can only change at
-- a valid_from or valid_to, so here the chain is walked once per (merchant, currency, epoch)
-- where an epoch is the interval between two consecutive such boundaries, and each payment
-- finds its epoch with an ASOF join. Same rows and amounts, a few hundred walks instead of N.
--
-- The results go to TEMP tables (so nothing is optimised away) which the last statements drop.
-- bench/pipeline.py runs the statements in order, stops the clock at the first DROP, and counts
-- / cross-checks the temp tables against the dbt models before dropping them.

-- ---- exact integer money helpers (SQL macros: inlined, no call overhead) -----------------------

-- n / d rounded half away from zero (money.md), on HUGEINT
CREATE OR REPLACE TEMP MACRO floor_div_half_up(n, d) AS
    sign(n) * sign(d) * ((abs(n) // abs(d))
                         + CASE WHEN 2 * (abs(n) % abs(d)) >= abs(d) THEN 1 ELSE 0 END);

-- fee(amount, rate_bps, fixed) = round_half_up(amount * rate_bps / 10000) + fixed
CREATE OR REPLACE TEMP MACRO floor_fee(amount, rate_bps, fixed_minor) AS
    floor_div_half_up(CAST(amount AS HUGEINT) * CAST(rate_bps AS HUGEINT), CAST(10000 AS HUGEINT))
    + CAST(fixed_minor AS HUGEINT);

-- round_half_up(a * b / c) without forming a * b (it can pass 2^127 for 18-decimal assets):
-- b = b1 * S + b0 with S = 10^10; a * b1 = q1 * c + r1; r1 * S + a * b0 = q2 * c + r2;
-- floor(a * b / c) = q1 * S + q2, half-up when 2 * r2 >= c. a = b = c: a (a full refund).
CREATE OR REPLACE TEMP MACRO floor_prorate_y(a, b, c) AS
    ((abs(a) * (abs(b) // CAST(10000000000 AS HUGEINT))) % abs(c)) * CAST(10000000000 AS HUGEINT)
    + abs(a) * (abs(b) % CAST(10000000000 AS HUGEINT));
CREATE OR REPLACE TEMP MACRO floor_prorate(a, b, c) AS
    CASE WHEN b = c AND c <> 0 THEN a
         ELSE sign(a) * sign(b) * sign(c)
              * ((abs(a) * (abs(b) // CAST(10000000000 AS HUGEINT))) // abs(c)
                     * CAST(10000000000 AS HUGEINT)
                 + floor_prorate_y(a, b, c) // abs(c)
                 + CASE WHEN 2 * (floor_prorate_y(a, b, c) % abs(c)) >= abs(c) THEN 1 ELSE 0 END)
    END;

-- ---- 1. fee per captured payment ---------------------------------------------------------------
-- Captured: success / partially_refunded / refunded with captured_at set; wallet spends carry no
-- fee (the top-up did). No merchant price in force: the row stays, price and fee NULL.
CREATE TEMP TABLE floor_fees AS
SELECT
    p.id AS payment_id,
    p.merchant_id,
    p.currency,
    p.captured_at,
    CAST(p.amount_minor AS HUGEINT) AS amount_minor,
    pr.id AS price_id,
    floor_fee(p.amount_minor, pr.rate_bps, coalesce(pr.fixed_minor, 0)) AS fee_minor
FROM raw.payments AS p
LEFT JOIN raw.prices AS pr
    ON  pr.subject_type = 'merchant'
    AND pr.subject_id = p.merchant_id
    AND pr.currency = p.currency
    AND pr.valid_from <= p.captured_at
    AND (pr.valid_to IS NULL OR p.captured_at < pr.valid_to)
WHERE p.status IN ('success', 'partially_refunded', 'refunded')
  AND p.captured_at IS NOT NULL
  AND p.payment_method_type <> 'wallet';

-- ---- 2. commission per level -------------------------------------------------------------------
-- Epochs: every instant at which some parent link, commission model or agent cost price starts
-- or stops being in force (plus -infinity for anything before the first). Inside an epoch the
-- tree and the rate cards are constant, so evaluating in-force at the epoch start is the same as
-- evaluating it at each payment's captured_at.
CREATE TEMP TABLE floor_epochs AS
SELECT DISTINCT epoch_start FROM (
    SELECT CAST('-infinity' AS TIMESTAMP) AS epoch_start
    UNION ALL SELECT valid_from FROM raw.agent_parents
    UNION ALL SELECT valid_to FROM raw.agent_parents
    UNION ALL SELECT valid_from FROM raw.commission_models
    UNION ALL SELECT valid_to FROM raw.commission_models
    UNION ALL SELECT valid_from FROM raw.prices WHERE subject_type = 'agent'
    UNION ALL SELECT valid_to FROM raw.prices WHERE subject_type = 'agent'
) AS b
WHERE epoch_start IS NOT NULL;

-- The chain of each (merchant with an agent, currency, epoch): level 1 = the merchant's direct
-- agent, each step up follows the parent link in force; at most 32 levels (a cycle in bad data
-- cannot recurse forever). What reaches level i from below (up_{i-1}) is F at level 1 and
-- fee(cost price) of the nearest markup agent below that has a cost price, so the walk carries
-- that agent's cost terms (below_*); the per-payment amounts come in the next statement.
CREATE TEMP TABLE floor_chains AS
WITH RECURSIVE
keys AS (
    SELECT m.id AS merchant_id, m.agent_id, c.currency, e.epoch_start
    FROM raw.merchants AS m
    CROSS JOIN (SELECT DISTINCT currency FROM floor_fees) AS c
    CROSS JOIN floor_epochs AS e
    WHERE m.agent_id IS NOT NULL
),

walk AS (
    SELECT merchant_id, currency, epoch_start, 1 AS level, agent_id,
           false AS below_has_cost,
           CAST(NULL AS BIGINT) AS below_rate_bps,
           CAST(NULL AS HUGEINT) AS below_fixed_minor
    FROM keys

    UNION ALL

    SELECT
        w.merchant_id, w.currency, w.epoch_start, w.level + 1, ap.parent_id,
        w.below_has_cost OR (cm.model = 'markup' AND cp.id IS NOT NULL),
        CASE WHEN cm.model = 'markup' AND cp.id IS NOT NULL
             THEN CAST(cp.rate_bps AS BIGINT) ELSE w.below_rate_bps END,
        CASE WHEN cm.model = 'markup' AND cp.id IS NOT NULL
             THEN CAST(coalesce(cp.fixed_minor, 0) AS HUGEINT) ELSE w.below_fixed_minor END
    FROM walk AS w
    JOIN raw.agent_parents AS ap
        ON  ap.agent_id = w.agent_id
        AND ap.parent_id IS NOT NULL
        AND ap.valid_from <= w.epoch_start
        AND (ap.valid_to IS NULL OR w.epoch_start < ap.valid_to)
    LEFT JOIN raw.commission_models AS cm
        ON  cm.agent_id = w.agent_id AND cm.currency = w.currency
        AND cm.valid_from <= w.epoch_start
        AND (cm.valid_to IS NULL OR w.epoch_start < cm.valid_to)
    LEFT JOIN raw.prices AS cp
        ON  cp.subject_type = 'agent' AND cp.subject_id = w.agent_id AND cp.currency = w.currency
        AND cp.valid_from <= w.epoch_start
        AND (cp.valid_to IS NULL OR w.epoch_start < cp.valid_to)
    WHERE w.level < 32
)

SELECT
    w.merchant_id, w.currency, w.epoch_start, w.level, w.agent_id,
    w.below_has_cost, w.below_rate_bps, w.below_fixed_minor,
    cm.model,
    CAST(cm.pct_bps AS BIGINT) AS pct_bps,
    CAST(coalesce(cm.fixed_minor, 0) AS HUGEINT) AS model_fixed_minor,
    cp.id AS cost_price_id,
    CAST(cp.rate_bps AS BIGINT) AS cost_rate_bps,
    CAST(coalesce(cp.fixed_minor, 0) AS HUGEINT) AS cost_fixed_minor
FROM walk AS w
LEFT JOIN raw.commission_models AS cm
    ON  cm.agent_id = w.agent_id AND cm.currency = w.currency
    AND cm.valid_from <= w.epoch_start
    AND (cm.valid_to IS NULL OR w.epoch_start < cm.valid_to)
LEFT JOIN raw.prices AS cp
    ON  cp.subject_type = 'agent' AND cp.subject_id = w.agent_id AND cp.currency = w.currency
    AND cp.valid_from <= w.epoch_start
    AND (cp.valid_to IS NULL OR w.epoch_start < cp.valid_to);

-- One row per priced captured payment and agent on its chain (commission.md):
--   markup with a cost price: up_{i-1} - fee(cost_i);  percentage: round_half_up(amount * pct
--   / 10000);  fixed: fixed_minor;  no model / markup without a cost price: 0.
CREATE TEMP TABLE floor_commissions AS
WITH placed AS (
    SELECT f.payment_id, f.merchant_id, f.currency, f.amount_minor, f.fee_minor, e.epoch_start
    FROM floor_fees AS f
    ASOF JOIN floor_epochs AS e ON f.captured_at >= e.epoch_start
    WHERE f.fee_minor IS NOT NULL
)
SELECT
    p.payment_id,
    p.merchant_id,
    p.currency,
    c.level,
    c.agent_id,
    c.model,
    CASE
        WHEN c.model = 'markup' AND c.cost_price_id IS NOT NULL
            THEN CASE WHEN c.below_has_cost
                      THEN floor_fee(p.amount_minor, c.below_rate_bps, c.below_fixed_minor)
                      ELSE p.fee_minor END
                 - floor_fee(p.amount_minor, c.cost_rate_bps, c.cost_fixed_minor)
        WHEN c.model = 'percentage' THEN floor_fee(p.amount_minor, c.pct_bps, 0)
        WHEN c.model = 'fixed' THEN c.model_fixed_minor
        ELSE CAST(0 AS HUGEINT)
    END AS commission_minor
FROM placed AS p
JOIN floor_chains AS c
    ON  c.merchant_id = p.merchant_id
    AND c.currency = p.currency
    AND c.epoch_start = p.epoch_start;

-- ---- 3. statement aggregates -------------------------------------------------------------------
-- Succeeded refunds (not of wallet payments) give back the payment's fee pro rata, cumulatively
-- so that a payment's reversals sum to prorate(F, total refunded, amount) and a full refund
-- gives back exactly F.
CREATE TEMP TABLE floor_refund_fees AS
WITH refunds AS (
    SELECT
        r.id AS refund_id, r.payment_id, r.merchant_id, r.currency, r.succeeded_at,
        CAST(r.amount_minor AS HUGEINT) AS refund_minor,
        sum(CAST(r.amount_minor AS HUGEINT)) OVER (
            PARTITION BY r.payment_id ORDER BY r.succeeded_at, r.id
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cum_refunded_minor
    FROM raw.refunds AS r
    WHERE r.status = 'succeeded' AND r.succeeded_at IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM raw.payments AS w
                      WHERE w.id = r.payment_id AND w.payment_method_type = 'wallet')
)
SELECT
    r.refund_id, r.merchant_id, r.currency, r.succeeded_at, r.refund_minor,
    floor_prorate(f.fee_minor, r.cum_refunded_minor, f.amount_minor)
    - floor_prorate(f.fee_minor, r.cum_refunded_minor - r.refund_minor, f.amount_minor)
        AS fee_reversed_minor
FROM refunds AS r
LEFT JOIN floor_fees AS f ON f.payment_id = r.payment_id;

-- Per merchant, day and currency: net = gross - refunds - fees, fees net of reversals; a
-- captured payment with no price counts with fee 0 (as int_settlement_items).
CREATE TEMP TABLE floor_statements AS
SELECT
    merchant_id,
    occurred_on,
    currency,
    sum(gross_minor) AS gross_minor,
    sum(refund_minor) AS refunds_minor,
    sum(fee_minor) AS fees_minor,
    sum(gross_minor) - sum(refund_minor) - sum(fee_minor) AS net_minor,
    count(*) FILTER (WHERE is_payment) AS payment_count,
    count(*) FILTER (WHERE NOT is_payment) AS refund_count
FROM (
    SELECT merchant_id, CAST(captured_at AS DATE) AS occurred_on, currency,
           amount_minor AS gross_minor, CAST(0 AS HUGEINT) AS refund_minor,
           coalesce(fee_minor, 0) AS fee_minor, true AS is_payment
    FROM floor_fees
    UNION ALL
    SELECT merchant_id, CAST(succeeded_at AS DATE), currency,
           CAST(0 AS HUGEINT), refund_minor, 0 - coalesce(fee_reversed_minor, 0), false
    FROM floor_refund_fees
) AS items
GROUP BY merchant_id, occurred_on, currency;

-- ---- 4. reconciliation: ledger <-> PSP lines by channel reference ------------------------------
-- Ledger side: captured payments on a PSP channel (not chain / x402, not wallet / agent token).
-- Channel side: current PSP CSV payment lines; a reference settled twice keeps its first line,
-- the others are duplicates. Classes (reconciliation.md names): matched, amount_mismatch
-- (gross or currency differs), missing_in_channel, missing_in_ledger, duplicate_in_channel.
CREATE TEMP TABLE floor_recon AS
WITH ledger AS (
    SELECT p.id AS payment_id, p.channel_id, p.channel_reference, p.currency,
           CAST(p.amount_minor AS HUGEINT) AS amount_minor
    FROM raw.payments AS p
    LEFT JOIN raw.channels AS c ON c.id = p.channel_id
    WHERE p.status IN ('success', 'partially_refunded', 'refunded')
      AND p.channel_id IS NOT NULL
      AND coalesce(c.channel_type, '') NOT IN ('crypto', 'chain', 'x402', 'wallet', 'agent_token')
),

lines AS (
    SELECT
        psp_line_id, channel, channel_reference, currency,
        CAST(gross_minor AS HUGEINT) AS gross_minor,
        row_number() OVER (PARTITION BY channel, channel_reference
                           ORDER BY settlement_date, psp_line_id) AS reference_rank
    FROM raw.psp_lines
    WHERE superseded_by IS NULL AND format = 'psp_csv' AND record_type = 'payment'
)

SELECT
    g.payment_id,
    l.psp_line_id,
    coalesce(g.channel_id, l.channel) AS channel,
    coalesce(g.currency, l.currency) AS currency,
    g.amount_minor AS ledger_minor,
    l.gross_minor AS channel_minor,
    CASE
        WHEN l.psp_line_id IS NULL THEN 'missing_in_channel'
        WHEN g.payment_id IS NULL THEN 'missing_in_ledger'
        WHEN l.reference_rank > 1 THEN 'duplicate_in_channel'
        WHEN g.currency = l.currency AND g.amount_minor = l.gross_minor THEN 'matched'
        ELSE 'amount_mismatch'
    END AS classification,
    l.gross_minor - g.amount_minor AS delta_minor
FROM ledger AS g
FULL OUTER JOIN lines AS l
    ON l.channel_reference = g.channel_reference AND l.channel = g.channel_id;

-- ---- clean up (not timed) ----------------------------------------------------------------------
DROP TABLE floor_recon;
DROP TABLE floor_statements;
DROP TABLE floor_refund_fees;
DROP TABLE floor_commissions;
DROP TABLE floor_chains;
DROP TABLE floor_epochs;
DROP TABLE floor_fees;
DROP MACRO floor_prorate;
DROP MACRO floor_prorate_y;
DROP MACRO floor_fee;
DROP MACRO floor_div_half_up;
