-- The channel side: payment lines of the Clearhouse PSP settlement CSV (current files only),
-- each with the ledger payment its reference names (channel_reference, else the platform id
-- in merchant_reference) and how many lines carry the same channel reference.

with lines as (
    select * from {{ ref('stg_files__psp_lines') }}
    where format = 'psp_csv' and record_type = 'payment'
),

ledger as (
    select * from {{ ref('int_recon_ledger') }}
),

referenced as (
    select
        l.*,
        coalesce(by_ref.payment_id, by_id.payment_id) as payment_id,
        -- a reference settled twice: the first line counts, the others are duplicates
        case when l.channel_reference is null then 1
             else row_number() over (partition by l.channel, l.channel_reference
                                     order by l.settlement_date, l.psp_line_id)
        end as reference_rank
    from lines as l
    left join ledger as by_ref
        on by_ref.channel_reference = l.channel_reference and by_ref.channel_id = l.channel
    left join ledger as by_id
        on by_ref.payment_id is null and by_id.payment_id = l.merchant_reference
)

select * from referenced
