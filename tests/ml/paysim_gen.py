"""A small PaySim-layout file with learnable fraud planted in it (fixed seed).

Legitimate customers pay merchants, cash in and out (now and then their whole balance, so the
drain rule has false positives), transfer to a few regular contacts and pay debits, mostly in
the daytime. Planted fraud is an account takeover: in one hour, often at night, 1-3 TRANSFER or
CASH_OUT events to never-seen accounts that move most or all of the victim's balance. About half
the episodes leave a remainder, so the drain rule misses them.
"""

from __future__ import annotations

import random
from pathlib import Path

from ml.paysim import COLUMNS

FLAG_OVER_MINOR = 200_000 * 100  # PaySim's isFlaggedFraud: a TRANSFER over 200,000


def major(minor: int) -> str:
    """PaySim writes '181.0' and '9839.64': at least one decimal, trailing zeros dropped."""
    whole, cents = divmod(minor, 100)
    text = f"{whole}.{cents:02d}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def generate(path: Path, *, seed: int = 7, customers: int = 250, steps: int = 240,
             episodes: int = 40) -> Path:
    rng = random.Random(seed)
    names = [f"C{1000 + i}" for i in range(customers)]
    balance = {name: int(rng.lognormvariate(8.5, 1.0) * 100) for name in names}
    contacts = {name: rng.sample(names, 3) for name in names}
    merchants = [f"M{5000 + i}" for i in range(150)]
    mules = (f"C{900000 + i}" for i in range(10_000))
    strangers = (f"C{700000 + i}" for i in range(100_000))
    takeovers = {}
    for name in rng.sample(names, episodes):
        takeovers.setdefault(rng.randrange(24, steps), []).append(name)
    rows = []

    def add(step, kind, amount, orig, dest, fraud=0):
        old = balance[orig]
        balance[orig] = old + amount if kind == "CASH_IN" else max(old - amount, 0)
        old_dest = balance.get(dest, 0) if not dest.startswith("M") else 0
        new_dest = old_dest if dest.startswith("M") else old_dest + amount
        if not dest.startswith("M"):
            balance[dest] = new_dest
        flagged = int(kind == "TRANSFER" and amount > FLAG_OVER_MINOR)
        rows.append((step, kind, major(amount), orig, major(old), major(balance[orig]), dest,
                     major(old_dest), major(new_dest), fraud, flagged))

    def legit(step, name):
        kind = rng.choices(["PAYMENT", "CASH_IN", "CASH_OUT", "TRANSFER", "DEBIT"],
                           [45, 20, 20, 10, 5])[0]
        if kind == "CASH_IN":
            add(step, kind, int(rng.lognormvariate(7.5, 0.8) * 100), name, rng.choice(merchants))
        elif kind == "PAYMENT":
            add(step, kind, int(rng.lognormvariate(4.0, 0.9) * 100), name, rng.choice(merchants))
        elif kind == "CASH_OUT":
            share = 1.0 if rng.random() < 0.08 else rng.uniform(0.05, 0.8)
            add(step, kind, int(balance[name] * share) or 100, name, rng.choice(merchants))
        elif kind == "TRANSFER":  # mostly to regular contacts, sometimes to a new payee
            payee = rng.choice(contacts[name]) if rng.random() < 0.6 else next(strangers)
            add(step, kind, int(balance[name] * rng.uniform(0.05, 0.6)) or 100, name, payee)
        else:
            add(step, kind, int(rng.lognormvariate(5.0, 0.7) * 100), name, rng.choice(merchants))

    for step in range(steps):
        hour = step % 24
        rate = 0.07 if 8 <= hour <= 21 else 0.012
        for name in names:
            if rng.random() >= rate:
                continue
            for _ in range(2 if rng.random() < 0.15 else 1):  # some people do two things at once
                legit(step, name)
        for victim in takeovers.get(step, []):
            drain = rng.random() < 0.5
            for hop in range(rng.randint(1, 3)):
                last = hop == 2 or rng.random() < 0.4
                share = 1.0 if (drain and last) else rng.uniform(0.3, 0.9)
                amount = max(int(balance[victim] * share), 100)
                add(step, rng.choice(["TRANSFER", "CASH_OUT"]), amount, victim, next(mules), 1)
                if last:
                    break

    with path.open("w") as fh:
        fh.write(",".join(COLUMNS) + "\n")
        for row in rows:
            fh.write(",".join(str(v) for v in row) + "\n")
    return path
