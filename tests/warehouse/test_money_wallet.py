"""Wallet arithmetic in the money core: cumulative pro-rata splits and the top-up clawback."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from warehouse.money import MoneyError, allocate, allocate_increment, topup_clawback

amounts = st.integers(min_value=0, max_value=10**20)


def _chunks(total: int, cuts: list[int]) -> list[int]:
    """Split total into consecutive positive pieces at the given cut points."""
    points = sorted({c % total for c in cuts if c % total > 0} | {0, total})
    return [b - a for a, b in zip(points, points[1:], strict=False)]


def test_spend_split_is_largest_remainder():
    assert allocate(100, [100, 50]) == [67, 33]
    assert allocate_increment([67, 33], 0, 50) == [34, 16]
    assert allocate_increment([67, 33], 50, 50) == [33, 17]


@given(p=amounts, b=amounts, cuts=st.lists(st.integers(min_value=1), max_size=6))
def test_cumulative_refund_of_a_spend_restores_exactly_its_parts(p, b, cuts):
    assume(p + b > 0)
    done = [0, 0]
    refunded = 0
    for piece in _chunks(p + b, cuts):
        part = allocate_increment([p, b], refunded, piece)
        assert min(part) >= 0 and sum(part) == piece
        done = [d + x for d, x in zip(done, part, strict=True)]
        refunded += piece
    assert done == [p, b]


def test_allocate_increment_refuses_more_than_the_whole():
    with pytest.raises(MoneyError):
        allocate_increment([10, 5], 10, 6)


def test_worked_example():
    # 100.00 topped up with 20.00 bonus; 10.00 of the bonus spent, then 50.00 refunded.
    claw = topup_clawback(topup_principal=10_000, topup_bonus=2_000, refunded_before=0,
                          clawed_before=0, refund=5_000, wallet_bonus=1_000)
    assert (claw.bonus_due, claw.bonus_clawed, claw.shortfall, claw.cash) == (1_000, 1_000, 0,
                                                                              5_000)
    claw = topup_clawback(topup_principal=10_000, topup_bonus=2_000, refunded_before=5_000,
                          clawed_before=1_000, refund=5_000, wallet_bonus=0)
    assert (claw.bonus_due, claw.bonus_clawed, claw.shortfall, claw.cash) == (1_000, 0, 1_000,
                                                                              4_000)


principal_st = st.integers(min_value=1, max_value=10**18)


@given(principal=principal_st, bonus=st.integers(min_value=0, max_value=10**18),
       cuts=st.lists(st.integers(min_value=1), max_size=6))
def test_full_refund_with_the_bonus_unspent_claws_back_exactly_the_bonus(principal, bonus, cuts):
    wallet_bonus, clawed, refunded = bonus, 0, 0
    for piece in _chunks(principal, cuts):
        claw = topup_clawback(topup_principal=principal, topup_bonus=bonus,
                              refunded_before=refunded, clawed_before=clawed, refund=piece,
                              wallet_bonus=wallet_bonus)
        assert claw.shortfall == 0 and claw.cash == piece
        wallet_bonus -= claw.bonus_clawed
        clawed += claw.bonus_clawed + claw.shortfall
        refunded += piece
    assert clawed == bonus and wallet_bonus == 0 and refunded == principal


@given(principal=principal_st, bonus=st.integers(min_value=0, max_value=10**18),
       spent=st.integers(min_value=0, max_value=10**18),
       cuts=st.lists(st.integers(min_value=1), max_size=6))
def test_parts_never_negative_and_principal_bonus_conserved(principal, bonus, spent, cuts):
    wallet_bonus = bonus - min(spent, bonus)  # some of the bonus already spent
    clawed = refunded = 0
    bonus_out = cash_out = shortfall_out = 0
    for piece in _chunks(principal, cuts):
        claw = topup_clawback(topup_principal=principal, topup_bonus=bonus,
                              refunded_before=refunded, clawed_before=clawed, refund=piece,
                              wallet_bonus=wallet_bonus)
        assert min(claw.bonus_due, claw.bonus_clawed, claw.shortfall, claw.cash) >= 0
        assert claw.bonus_clawed <= wallet_bonus
        # principal leaving the wallet = cash to the customer + bonus kept from the cash
        assert claw.principal_out == piece == claw.cash + claw.shortfall
        assert claw.bonus_clawed + claw.shortfall <= claw.bonus_due
        wallet_bonus -= claw.bonus_clawed
        clawed += claw.bonus_clawed + claw.shortfall
        refunded += piece
        bonus_out += claw.bonus_clawed
        cash_out += claw.cash
        shortfall_out += claw.shortfall
    assert cash_out + shortfall_out == principal
    # the bonus is settled (clawed or kept from the cash), never more than given; in full unless
    # the cash ran out (a bonus above the principal, already spent)
    assert bonus_out + shortfall_out <= bonus
    if bonus <= principal:
        assert bonus_out + shortfall_out == bonus
    assert wallet_bonus == bonus - min(spent, bonus) - bonus_out >= 0


def test_clawback_refuses_refund_beyond_principal():
    with pytest.raises(MoneyError):
        topup_clawback(topup_principal=100, topup_bonus=10, refunded_before=60, clawed_before=6,
                       refund=50, wallet_bonus=10)
