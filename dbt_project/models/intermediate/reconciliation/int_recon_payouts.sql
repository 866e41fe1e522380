-- The PSP payouts a run knows (Clearhouse PSP settlement CSV `payout` rows, current files of the
-- run's day and before: var recon_as_of), each with what its bank credit must be: the sum of the
-- payout's PSP lines, i.e. the net of the lines (payments, refunds, chargebacks, fee
-- adjustments) that carry its payout_id on the same channel; a payout row with no such lines in
-- the files stands for them with its own gross (`expected_minor`). `due_date`: the day the
-- credit is expected, the payout's value date (payout_date, else the file's day + the channel's
-- settlement window, `settlement_window_days`: the channel's, default 1); a positive payout with
-- no bank credit once var recon_grace_days have passed after it is a payout_mismatch
-- (fct_reconciliation_breaks). `payout_rank`: the payout
-- row's rank among the rows of its channel carrying its payout id (settlement day, then line), so
-- that (channel, payout_id, payout_rank) names a payout whatever file version it was read from:
-- the payout breaks are keyed by it.

{% set as_of = recon_as_of() %}

with payouts as (
    select * from {{ ref('stg_files__psp_lines') }}
    where format = 'psp_csv' and record_type = 'payout' and settlement_date <= {{ as_of }}
),

payout_lines as (
    select channel, payout_id, count(*) as line_count,
           cast(sum(net_minor) as {{ money_type() }}) as lines_net_minor
    from {{ ref('stg_files__psp_lines') }}
    where format = 'psp_csv' and record_type <> 'payout' and payout_id is not null
      and settlement_date <= {{ as_of }}
    group by channel, payout_id
)

select
    p.psp_line_id,
    p.channel,
    p.currency,
    p.payout_id,
    p.gross_minor as payout_minor,
    coalesce(pl.line_count, 0) as line_count,
    pl.lines_net_minor,
    cast(coalesce(pl.lines_net_minor, p.gross_minor) as {{ money_type() }}) as expected_minor,
    p.settlement_date,
    row_number() over (partition by p.channel, p.payout_id
                       order by p.settlement_date, p.line_number, p.psp_line_id) as payout_rank,
    coalesce(p.payout_date,
             p.settlement_date + coalesce(c.settlement_window_days, 1)) as due_date,
    coalesce(c.settlement_window_days, 1) as settlement_window_days
from payouts as p
left join payout_lines as pl on pl.channel = p.channel and pl.payout_id = p.payout_id
left join {{ ref('stg_clearhouse__channels') }} as c on c.channel_id = p.channel
