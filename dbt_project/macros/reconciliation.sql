{# The day reconciliation counts ages and windows to: var recon_as_of, else the run's UTC date. #}
{% macro recon_as_of() -%}
    cast('{{ var("recon_as_of", run_started_at.strftime("%Y-%m-%d")) }}' as date)
{%- endmacro %}


{# ---- recon_has_token(text, token): `token` appears in `text` as a whole token ----------- #}
{#   Bank remittance text and end-to-end ids carry a payout id among other words: "PAYOUT po_1",
     "REF/po_1/MARCH". A token is a run of characters between whitespace or punctuation
     (letters, digits, '_' and '-' belong to tokens), so po_1 is found in "PAYOUT po_1" and not
     in "PAYOUT po_10". Both sides are tokenised the same way (an id holding '/' still matches
     itself) by translate() and a padded position(): plain SQL that DuckDB and Postgres run
     alike, no regex dialect. NULL text or token: no match. #}
{% macro recon_has_token(text, token) -%}
    position({{ clearhouse.recon_tokens(token) }} in {{ clearhouse.recon_tokens(text) }}) > 0
{%- endmacro %}

{% macro recon_tokens(expr) -%}
    {%- set separators = "/\\,;:.()[]{}<>+#=*|!?\"" -%}
    (' ' || translate(({{ expr }}), '{{ separators }}' || chr(9) || chr(10) || chr(13),
                      '{{ " " * (separators | length + 3) }}') || ' ')
{%- endmacro %}


{# ---- recon_name_joins(records, key, alias): which ledger record a channel line `l` names ---- #}
{#   reconciliation.md "Keys": a line carries the channel's reference or the platform's id. The
     record whose channel_reference is the line's, else the one whose `key` is the line's
     merchant_reference - both only on the line's channel. Two left joins, `<alias>_ref` and
     `<alias>_id`; the named record's key is coalesce(<alias>_ref.<key>, <alias>_id.<key>). #}
{% macro recon_name_joins(records, key, alias) -%}
    left join {{ records }} as {{ alias }}_ref
        on  {{ alias }}_ref.channel_reference = l.channel_reference
        and {{ alias }}_ref.channel_id = l.channel
    left join {{ records }} as {{ alias }}_id
        on  {{ alias }}_ref.{{ key }} is null and {{ alias }}_id.{{ key }} = l.merchant_reference
        and {{ alias }}_id.channel_id = l.channel
{%- endmacro %}


{# ---- recon_psp_line_match(payment_id, refund_id): a 1:1 match of a PSP line `l` --------- #}
{#   The columns of fct_reconciliation_matches for a channel line matched by reference (a
     payment, refund or chargeback line): the line's own figures, the ledger record's ids. #}
{% macro recon_psp_line_match(payment_id, refund_id) -%}
        'exact_reference' as match_type,
        'exact_reference:' || l.psp_line_id as match_key,
        l.channel,
        l.currency,
        {{ payment_id }} as payment_id,
        l.channel_reference,
        cast(null as varchar(200)) as statement_line_id,
        cast(null as varchar(66)) as chain_tx_hash,
        l.gross_minor as amount_minor,
        l.settlement_date as matched_on,
        l.psp_line_id,
        {{ refund_id }} as refund_id
{%- endmacro %}


{# ---- recon_record_key(record_key, rank): a break key that outlives a file version ---------- #}
{#   A break raised from a PSP line that names a ledger record: the record's key for the first
     line naming it, '<key>:<rank>' for a later one (a duplicate). psp_line_id would name the
     file version, so a corrected file re-sent under its name would close the break and open
     the same one under a new id. #}
{% macro recon_record_key(record_key, rank) -%}
    case when {{ rank }} = 1 then {{ record_key }}
         else {{ record_key }} || ':' || cast({{ rank }} as varchar(20)) end
{%- endmacro %}
