"""The shard partition: deterministic, balanced by cost, covering every unit once; `--shard` parsing."""

import json

import pytest

from retrieval_heads.cluster.shard import Shard, parse_shard, partition, select
from retrieval_heads.errors import ParamError


def test_the_partition_covers_every_unit_once_and_keeps_the_run_order():
    costs = [5, 1, 9, 3, 3, 7, 2, 8]
    parts = partition(costs, 3)
    assert sorted(i for p in parts for i in p) == list(range(len(costs)))
    assert all(p == sorted(p) for p in parts)
    assert parts == partition(costs, 3)  # deterministic


def test_the_partition_balances_cost_not_count():
    costs = [4000, 4000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000]
    loads = sorted(sum(costs[i] for i in p) for p in partition(costs, 2))
    assert loads == [8000, 8000]
    by_index = [costs[:5], costs[5:]]  # what a split by index alone gives
    assert max(sum(c) for c in by_index) > max(loads)


def test_equal_costs_split_into_equal_counts():
    parts = partition([1.0] * 7, 3)
    assert sorted(len(p) for p in parts) == [2, 2, 3]


def test_select_writes_a_manifest_of_all_ids_and_its_own(tmp_path):
    units = [("a", 10), ("b", 30), ("c", 20)]
    mine = select(units, "1/2", cost=lambda u: u[1], key=lambda u: u[0], out=tmp_path, jsonl="x.jsonl", kind="item")
    m = json.loads((tmp_path / "shard.json").read_text())
    assert m["ids"] == ["a", "b", "c"] and m["mine"] == [u[0] for u in mine] and m["shard"] == "1/2"
    other = select(units, "0/2", cost=lambda u: u[1], key=lambda u: u[0])
    assert sorted(u[0] for u in mine + other) == ["a", "b", "c"]
    assert select(units, None, cost=lambda u: u[1], key=lambda u: u[0]) == units


@pytest.mark.parametrize("spec", ["3/3", "1", "a/b", "0/0", "-1/2"])
def test_a_bad_shard_is_one_line_naming_the_form(spec):
    with pytest.raises(ParamError, match=r"shard=.*(i/n|counts from 0)"):
        parse_shard(spec)


def test_more_shards_than_units_is_refused():
    with pytest.raises(ParamError, match="at most 2 shards"):
        select([1, 2], "2/4", cost=float, key=str)
    assert parse_shard("2/4") == Shard(2, 4) and str(Shard(2, 4)) == "2/4"
