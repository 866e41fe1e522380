"""Machine-code loops (numba) behind ml.payment_features' batch windows.

Each replaces a numpy or polars step that sorts or binary-searches where one pass will do:
- `text_codes`: each row's key as a dense code (0, 1, ... in order of first appearance) by an
  open-addressing table - instead of sorting the keys' hashes - reading polars' string views
  as they are (Arrow's layout);
- `pair_seen_within`: whether a pair of codes (customer, device) occurred in a trailing window,
  one table probe per row;
- `group_order`: a stable counting sort of rows by those codes (each key's rows stay in frame
  order) - instead of a comparison sort;
- `trailing_counts`: a key's rows in trailing windows, in one pass in time order - for keys that
  need only counts, instead of sorting the rows by key;
- `search_left`: np.searchsorted(a, v, "left") for queries that mostly come in order (the
  windows' queries always do), by walking one pointer - instead of a binary search per query;
- `running_sums`, `window_counts`, `window_sums`: a key's running sums, and each window's size
  and sum from them put back in frame order, each in one pass - instead of numpy's gathers,
  `where`s and scatter, each a pass and a fresh array.

Every function gives exactly the result of the step it replaces (tests/ml/test_feature_kernels.py).
They release the GIL, so the windows' threads run them side by side. numba compiles them on the
first call and caches the machine code next to this file; only batch feature computation imports
this module - never the API's live scorer.

Their outputs are allocated by numpy and passed in (the public functions below do that): numpy
asks the kernel for transparent huge pages on large arrays, numba's own allocations do not, and
a million-row output in 4 KiB pages costs two thousand page faults each time (a third of the
windows' time went to the kernel's page faults before).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: spreads the hash's bits over the slots
_ALL_BITS = np.uint64(0xFFFFFFFFFFFFFFFF)


@njit(nogil=True, cache=True)
def _slot(h, bits):  # pragma: no cover - machine code; tested through its callers
    return np.int64((h * _MIX) >> np.uint64(64 - bits))


@njit(nogil=True, cache=True)
def _grown(table, bits, free):  # pragma: no cover
    """The table with twice the slots, its entries placed again (a load above one half). Column
    0 is `free` in a free slot, column 1 the entry's hash."""
    bits += 1
    grown = np.full((1 << bits, table.shape[1]), free, dtype=table.dtype)
    for old in range(table.shape[0]):
        if table[old, 0] != free:
            slot = _slot(np.uint64(table[old, 1]), bits)
            while grown[slot, 0] != free:
                slot = (slot + 1) & ((1 << bits) - 1)
            grown[slot] = table[old]
    return grown, bits


def text_codes(chunks, data, buffer_starts, hash_mask=_ALL_BITS):
    """(codes, distinct) of a text column given as Arrow string views, chunk after chunk: rows
    with equal text get equal codes, numbered 0, 1, ... in order of first appearance; a null
    row gets -1. Each chunk is (views, valid, first_buffer): its view buffer as (rows, 2)
    little-endian words, its rows' validity, and the number of data buffers of the chunks
    before it; `data` is all chunks' data buffers end to end, `buffer_starts` where each starts
    in it. A value of up to 12 bytes is in its view itself (length, then the bytes), a longer
    one in the data. A view's words pick the table slot (through a hash of all its bytes for a
    long value) and a row joins a code only if its bytes equal the code's, so colliding hashes
    cost time, never a wrong code (`hash_mask`, all bits by default: tests clear it to make
    every key collide). Reading the views polars holds - no copy, no hash column, no
    byte-by-byte packing - is what makes this cheap: one table probe per row."""
    codes = np.full(sum(chunk[0].shape[0] for chunk in chunks), -1, dtype=np.int64)
    table, bits, distinct, at = np.full((1 << 10, 4), _ALL_BITS, dtype=np.uint64), 10, 0, 0
    for views, valid, first_buffer in chunks:  # one table for all of them
        rows = views.shape[0]
        table, bits, distinct = _text_codes(views, valid, data, buffer_starts, first_buffer,
                                            hash_mask, codes[at:at + rows], table, bits,
                                            distinct)
        at += rows
    return codes, distinct


_INLINE_BYTES = 12  # Arrow's string views hold a value of up to 12 bytes themselves
_LOW = np.uint64(0xFFFFFFFF)
_SPREAD = np.uint64(0xC2B2AE3D27D4EB4F)  # mixes a short value's second word into the first
_FNV_PRIME = np.uint64(0x100000001B3)


@njit(nogil=True, cache=True)
def _view_words(views, i):  # pragma: no cover
    """(length, w0, w1) of row i's view, the bytes past a short value's length zeroed (Arrow
    asks writers to zero them; a key must not depend on it)."""
    w0, w1 = views[i, 0], views[i, 1]
    length = np.int64(w0 & _LOW)
    if length < 4:
        w0 &= (np.uint64(1) << np.uint64(32 + 8 * length)) - np.uint64(1)
        w1 = np.uint64(0)
    elif length < _INLINE_BYTES:
        w1 &= (np.uint64(1) << np.uint64(8 * (length - 4))) - np.uint64(1)
    return length, w0, w1


@njit(nogil=True, cache=True)
def _data_at(w1, buffer_starts):  # pragma: no cover
    """Where a long value's bytes start in `data`: its view's buffer index and offset."""
    return buffer_starts[np.int64(w1 & _LOW)] + np.int64(w1 >> np.uint64(32))


@njit(nogil=True, cache=True)
def _text_codes(views, valid, data, buffer_starts, first_buffer, hash_mask, codes, table, bits,
                distinct):  # pragma: no cover
    # per slot: code (_ALL_BITS: a free slot), hash, the first row's two view words - for a
    # short value the value itself, for a long one its length and first 4 bytes, then where
    # its bytes are (the buffer's index counted over all chunks)
    for i in range(views.shape[0]):
        if not valid[i]:
            continue
        length, w0, w1 = _view_words(views, i)
        if length <= _INLINE_BYTES:
            h = (w0 ^ (w1 * _SPREAD)) & hash_mask
        else:  # FNV-1a over the bytes after the 4 the view holds
            w1 += np.uint64(first_buffer)  # the chunk's buffer index -> the column's
            at = _data_at(w1, buffer_starts)
            h = w0
            for k in range(4, length):
                h = (h ^ np.uint64(data[at + k])) * _FNV_PRIME
            h &= hash_mask
        slot = _slot(h, bits)
        found = -1
        while table[slot, 0] != _ALL_BITS:
            if table[slot, 1] == h and table[slot, 2] == w0:  # same hash, length, first bytes
                if length <= _INLINE_BYTES:
                    same = table[slot, 3] == w1
                else:
                    theirs, ours = _data_at(table[slot, 3], buffer_starts), _data_at(
                        w1, buffer_starts)
                    same = True
                    for k in range(4, length):
                        if data[theirs + k] != data[ours + k]:
                            same = False
                            break
                if same:
                    found = np.int64(table[slot, 0])
                    break
            slot = (slot + 1) & ((1 << bits) - 1)
        if found >= 0:
            codes[i] = found
            continue
        table[slot, 0], table[slot, 1], table[slot, 2], table[slot, 3] = (
            np.uint64(distinct), h, w0, w1)
        codes[i] = distinct
        distinct += 1
        if 2 * distinct > (1 << bits):
            table, bits = _grown(table, bits, _ALL_BITS)
    return table, bits, distinct


def first_rows(codes, distinct):
    """Each code's first row (codes numbered 0 .. distinct - 1; -1 for a null row): where its
    value can be read once."""
    first = np.full(distinct, -1, dtype=np.int64)
    _first_rows(codes, first)
    return first


@njit(nogil=True, cache=True)
def _first_rows(codes, first):  # pragma: no cover
    found = 0
    for i in range(codes.shape[0]):
        code = codes[i]
        if code >= 0 and first[code] < 0:
            first[code] = i
            found += 1
            if found == first.shape[0]:  # few values (currencies, methods): an early stop
                break


def pair_seen_within(first, second, second_distinct, created_us, period_us):
    """Per row (rows in instant order, as the frame is): whether an earlier row - at an instant
    before the row's own - with the same pair (first, second) of codes lies in [t - period, t);
    False where either code is -1. trailing_counts(pair codes, [period])[0] > 0 without the
    pairs' codes or the counts: one table probe per row holds what it needs (the pair's latest
    instant and the one before it)."""
    seen = np.zeros(first.shape[0], dtype=np.bool_)
    _pair_seen_within(first, second, second_distinct, created_us, period_us, seen)
    return seen


_NEVER = np.iinfo(np.int64).min


@njit(nogil=True, cache=True)
def _pair_seen_within(first, second, second_distinct, created_us, period_us,
                      seen):  # pragma: no cover
    bits = 10
    # per slot: the pair's first row (-1: a free slot), the pair, its latest instant and its
    # instant before that (_NEVER: none)
    table = np.full((1 << bits, 4), -1, dtype=np.int64)
    used = 0
    for i in range(first.shape[0]):
        if first[i] < 0 or second[i] < 0:
            continue
        pair = first[i] * (second_distinct + 1) + second[i]  # exact: one pair, one number
        slot = _slot(np.uint64(pair), bits)
        while table[slot, 0] >= 0 and table[slot, 1] != pair:
            slot = (slot + 1) & ((1 << bits) - 1)
        t = created_us[i]
        if table[slot, 0] < 0:
            table[slot, 0], table[slot, 1], table[slot, 2], table[slot, 3] = i, pair, t, _NEVER
            used += 1
            if 2 * used > (1 << bits):
                table, bits = _grown(table, bits, np.int64(-1))
            continue
        latest, before = table[slot, 2], table[slot, 3]
        earlier = latest if latest < t else before  # the pair's last instant before t
        seen[i] = earlier != _NEVER and earlier >= t - period_us
        if latest != t:
            table[slot, 2], table[slot, 3] = t, latest


def group_order(codes, distinct, rank):
    """(order, sorted codes, sorted rank): the permutation that sorts rows by code (0 ..
    distinct - 1, then the null rows' -1 as `distinct`), rows of one code in their original
    order, with the codes and `rank` in that order - one counting sort."""
    n = codes.shape[0]
    order, key, sorted_rank = (np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64),
                               np.empty(n, dtype=rank.dtype))
    _group_order(codes, rank, np.zeros(distinct + 2, dtype=np.int64), order, key, sorted_rank)
    return order, key, sorted_rank


@njit(nogil=True, cache=True)
def _group_order(codes, rank, starts, order, key, sorted_rank):  # pragma: no cover
    null = starts.shape[0] - 2  # the null rows' group, after every code's
    for code in codes:
        starts[(null if code < 0 else code) + 1] += 1
    for code in range(null + 1):
        starts[code + 1] += starts[code]
    for i in range(codes.shape[0]):
        code = null if codes[i] < 0 else codes[i]
        at = starts[code]
        order[at], key[at], sorted_rank[at] = i, code, rank[i]
        starts[code] = at + 1


def key_runs(sorted_codes, sorted_rank):
    """For rows sorted by key, each key's rows by instant: per position, (start, end) - where
    its key's run starts, and where its key's rows at its own instant start (the rows before
    `end` are the key's earlier ones)."""
    n = sorted_codes.shape[0]
    start, end = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    _key_runs(sorted_codes, sorted_rank, start, end)
    return start, end


@njit(nogil=True, cache=True)
def _key_runs(sorted_codes, sorted_rank, start, end):  # pragma: no cover
    n = sorted_codes.shape[0]
    run = at = 0
    for p in range(n):
        if p == 0 or sorted_codes[p] != sorted_codes[p - 1]:
            run = at = p
        elif sorted_rank[p] != sorted_rank[p - 1]:
            at = p
        start[p], end[p] = run, at


def window_first(order, start, sorted_rank, since_rank):
    """Per sorted position p: the first position of p's key run whose instant rank is at least
    since_rank[order[p]] (the window's start, given in frame order). Along a run both ranks only
    grow, so one pointer walks each run once."""
    first = np.empty(order.shape[0], dtype=np.int64)
    _window_first(order, start, sorted_rank, since_rank, first)
    return first


@njit(nogil=True, cache=True)
def _window_first(order, start, sorted_rank, since_rank, first):  # pragma: no cover
    n = order.shape[0]
    q = 0
    for p in range(n):
        if start[p] == p:
            q = p
        target = since_rank[order[p]]
        while sorted_rank[q] < target:
            q += 1
        first[p] = q


def trailing_counts(codes, distinct, created_us, periods_us):
    """Per row and period P (rows in instant order, as the frame is): the earlier rows with the
    row's code in [t - P, t) - rows at t itself excluded - in one pass in row order, 0 where the
    code is -1. Each code keeps, per period, where its rows in the window start and how many
    there are: a row ends the window of rows older than t - P (walked along the code's rows,
    each once) and joins it. Shape (len(periods_us), rows): the sorted path's counts for keys
    that need nothing but counts, without sorting the rows by key."""
    n, k = codes.shape[0], periods_us.shape[0]
    counts = np.empty((k, n), dtype=np.int64)
    _trailing_counts(codes, created_us, periods_us, counts,
                     np.zeros((distinct, 2 * k), dtype=np.int64),
                     np.full((distinct, 3), np.iinfo(np.int64).min, dtype=np.int64),
                     np.empty(n, dtype=np.int64))
    return counts


@njit(nogil=True, cache=True)
def _trailing_counts(codes, created_us, periods_us, counts, window, latest,
                     next_row):  # pragma: no cover
    # window[c, 2j], window[c, 2j + 1]: the first row of code c in period j's window and how
    # many rows from it on; latest[c]: the code's last row, its instant and how many of the
    # code's rows are at that instant; next_row: the next row with the same code
    k = periods_us.shape[0]
    for i in range(codes.shape[0]):
        c = codes[i]
        if c < 0:
            for j in range(k):
                counts[j, i] = 0
            continue
        t = created_us[i]
        at_t = latest[c, 2] if latest[c, 1] == t else 0  # the code's rows at t: not earlier
        for j in range(k):
            since = t - periods_us[j]
            first, size = window[c, 2 * j], window[c, 2 * j + 1]
            while size > 0 and created_us[first] < since:
                first = next_row[first]
                size -= 1
            counts[j, i] = size - at_t
            window[c, 2 * j] = first if size > 0 else i
            window[c, 2 * j + 1] = size + 1
        if latest[c, 0] >= 0:
            next_row[latest[c, 0]] = i
        latest[c, 0] = i
        latest[c, 2] = latest[c, 2] + 1 if latest[c, 1] == t else 1
        latest[c, 1] = t


def search_left(a, v):
    """np.searchsorted(a, v, "left") for a sorted `a`: the pointer moves from the last answer,
    one step per element passed, so in-order queries cost one pass over both arrays."""
    out = np.empty(v.shape[0], dtype=np.int64)
    _search_left(a, v, out)
    return out


@njit(nogil=True, cache=True)
def _search_left(a, v, out):  # pragma: no cover
    j = 0
    n = a.shape[0]
    for i in range(v.shape[0]):
        x = v[i]
        while j > 0 and a[j - 1] >= x:
            j -= 1
        while j < n and a[j] < x:
            j += 1
        out[i] = j


def running_sums(keys, values, order):
    """Running sum of values[order[p]] along p, restarted wherever `keys` (sorted by `order`)
    differs from the one before; in the values' dtype (integers exact)."""
    out = np.empty(order.shape[0], dtype=values.dtype)
    _running_sums(keys, values, order, out, values.dtype.type(0))
    return out


@njit(nogil=True, cache=True)
def _running_sums(keys, values, order, out, zero):  # pragma: no cover
    total = zero
    for i in range(order.shape[0]):
        if i == 0 or keys[i] != keys[i - 1]:
            total = zero
        total += values[order[i]]
        out[i] = total


def window_counts(order, null, end, first):
    """Per sorted position p, put in frame order (out[order[p]]): the size of the window
    [first[p], end[p]) - 0 where the key is `null`."""
    out = np.empty(order.shape[0], dtype=np.int64)
    _window_counts(order, null, end, first, out)
    return out


@njit(nogil=True, cache=True)
def _window_counts(order, null, end, first, out):  # pragma: no cover
    for p in range(order.shape[0]):
        out[order[p]] = 0 if null[p] else end[p] - first[p]


def window_sums(order, null, start, end, first, running):
    """Per sorted position p, put in frame order: the sum over the window [first[p], end[p])
    from `running` (running_sums restarted at each key's run, which starts at start[p]) -
    running[end - 1] - running[first - 1], a term 0 at the run's start - and 0 where the key is
    `null` or the window empty."""
    out = np.empty(order.shape[0], dtype=running.dtype)
    _window_sums(order, null, start, end, first, running, out)
    return out


@njit(nogil=True, cache=True)
def _window_sums(order, null, start, end, first, running, out):  # pragma: no cover
    for p in range(order.shape[0]):
        e, f = end[p], first[p]
        if null[p] or e == f:
            out[order[p]] = 0
        else:
            upto = running[e - 1] if e > start[p] else 0
            below = running[f - 1] if f > start[p] else 0
            out[order[p]] = upto - below


DISTANCE_MEMO = 4096  # pairs of places whose distance assemble_rows remembers (a power of 2)


@njit(nogil=True, cache=True)
def assemble_rows(out, start, stop, counts, usd, usd_valid, customer_valid,
                  cust_30d, cust_usd_30d, previous, created_us, place, place_lat, place_lon,
                  device_valid, device_seen_30d, declines_24h, merchant_1h, merchant_declines_1h,
                  method_code, n_methods, no_history_hours, earth_km2):  # pragma: no cover
    """FEATURES of frame rows [start, stop) into out[row - start] (row-major, FEATURES' order),
    each as ml.payment_features.batch_features computes it with polars - the same float
    operations in the same order (NaN where polars has a null), so the rows are equal bit for
    bit (tests/ml/test_payment_features.py compares them). `place` numbers the rows' distinct
    geos that have a point (place_lat, place_lon; -1 for none): a distance between two places is
    computed once per pair seen (payments come from few places, and the trigonometry is half of
    this loop's time)."""
    rad = np.pi / 180
    n_counts = len(counts)
    n_places = place_lat.shape[0]
    memo_pair = np.full(DISTANCE_MEMO, -1, dtype=np.int64)
    memo_km = np.zeros(DISTANCE_MEMO)
    for row in range(start, stop):
        o = out[row - start]
        log_usd = np.log1p(usd[row]) if usd_valid[row] else np.nan
        o[0] = log_usd
        history = cust_30d[row] > 0 and customer_valid[row]
        o[1] = log_usd - np.log1p(cust_usd_30d[row] / cust_30d[row]) if history else 0.0
        for k in range(n_counts):
            o[2 + k] = counts[k][row]
        i = 2 + n_counts
        prev = previous[row]
        if prev >= 0:
            # times the reciprocal, as polars divides a column by a constant
            o[i] = (created_us[row] - created_us[prev]) * (1 / 3.6e9)
        else:
            o[i] = no_history_hours
        here, there = place[row], place[prev] if prev >= 0 else -1
        if here >= 0 and there >= 0:
            # a pair of places seen before: the same distance again (a pure function of them)
            pair = there * n_places + here
            slot = pair & (DISTANCE_MEMO - 1)
            if memo_pair[slot] == pair:
                o[i + 1] = memo_km[slot]
            else:
                lat1, lon1 = place_lat[there], place_lon[there]
                lat2, lon2 = place_lat[here], place_lon[here]
                h = (np.sin((lat2 - lat1) * rad / 2) ** 2
                     + np.cos(lat1 * rad) * np.cos(lat2 * rad)
                     * np.sin((lon2 - lon1) * rad / 2) ** 2)
                o[i + 1] = memo_km[slot] = earth_km2 * np.arcsin(np.sqrt(h))
                memo_pair[slot] = pair
        else:
            o[i + 1] = 0.0
        o[i + 2] = 1.0 if history and device_valid[row] and not device_seen_30d[row] else 0.0
        o[i + 3] = declines_24h[row]
        m = merchant_1h[row]
        o[i + 4] = m
        o[i + 5] = merchant_declines_1h[row] / m if m > 0 else 0.0
        o[i + 6] = (created_us[row] // 3_600_000_000) % 24
        code = method_code[row]
        for j in range(n_methods):
            o[i + 7 + j] = np.nan if code < 0 else (1.0 if code == j else 0.0)
