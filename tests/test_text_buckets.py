"""pathattr.text.length_buckets: every index once, each bucket within max_batch and
max_tokens (rows * its longest length), ascending lengths; and the padding it saves
against padding a batch to the longest text of the data set."""
import random

import pytest

import pathattr.text as pt


def _check(lengths, buckets, max_batch, max_tokens):
    flat = [i for b in buckets for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths)  # ascending across and within buckets
    for b in buckets:
        assert 1 <= len(b) <= max_batch
        longest = max(lengths[i] for i in b)
        if max_tokens is not None and len(b) > 1:
            assert len(b) * longest <= max_tokens


@pytest.mark.parametrize("max_batch,max_tokens", [(1, None), (4, None), (32, None), (8, 64), (100, 50), (3, 1)])
def test_buckets_hold_every_text_within_the_limits(max_batch, max_tokens, seed):
    rng = random.Random(seed)
    for n in (1, 2, 7, 100):
        lengths = [rng.randint(1, 40) for _ in range(n)]
        b = pt.length_buckets(lengths, max_batch=max_batch, max_tokens=max_tokens)
        _check(lengths, b, max_batch, max_tokens)
        if max_tokens is None:  # greedy: as few buckets as the batch limit allows
            assert len(b) == -(-n // max_batch)


def test_known_answer_and_ties_keep_input_order():
    assert pt.length_buckets([5, 2, 5, 9, 2], max_batch=2) == [[1, 4], [0, 2], [3]]
    # max_tokens: [2,2] = 4 tokens, + a 5 -> 3 * 5 = 15 > 12, so the 5s start a new bucket
    assert pt.length_buckets([5, 2, 5, 9, 2], max_batch=8, max_tokens=12) == [[1, 4], [0, 2], [3]]
    assert pt.length_buckets([30], max_tokens=10) == [[0]]  # longer than max_tokens: its own bucket
    assert pt.length_buckets([], max_batch=3) == []


def test_padding_is_far_below_padding_to_the_longest_text(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(3, 200) for _ in range(1000)]
    b = pt.length_buckets(lengths, max_batch=32)
    padded = sum(len(g) * max(lengths[i] for i in g) for g in b)
    assert padded < 1.1 * sum(lengths) < 0.7 * len(lengths) * max(lengths)


@pytest.mark.parametrize("max_padding", [0.0, 0.05, 0.3])
def test_max_padding_bounds_each_buckets_padding(max_padding, seed):
    rng = random.Random(seed)
    lengths = [rng.randint(1, 40) for _ in range(200)]
    buckets = pt.length_buckets(lengths, max_batch=16, max_padding=max_padding)
    _check(lengths, buckets, 16, None)
    for b in buckets:
        own = sum(lengths[i] for i in b)
        assert len(b) * max(lengths[i] for i in b) <= (1 + max_padding) * own + 1e-9
    if max_padding == 0.0:  # one length per bucket, and every bucket of a length full but its last
        assert all(len({lengths[i] for i in b}) == 1 for b in buckets)
        for n in set(lengths):
            sizes = [len(b) for b in buckets if lengths[b[0]] == n]
            assert sizes == [16] * (len(sizes) - 1) + [sizes[-1]]
    assert pt.length_buckets([12, 12, 13, 60, 61, 62, 80], max_padding=0.05) == [[0, 1], [2], [3, 4, 5], [6]]


@pytest.mark.parametrize("bad,err", [(-0.1, ValueError), (float("nan"), TypeError), ("0", TypeError), (True, TypeError)])
def test_max_padding_is_checked(bad, err):
    with pytest.raises(err, match="max_padding"):
        pt.length_buckets([3, 4], max_padding=bad)
