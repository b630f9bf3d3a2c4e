"""The chaos cluster's pure plan: nodes, one proxy per directed link, dial maps, partition cuts."""

from __future__ import annotations

import itertools

import pytest

from orbitmq.chaos.cluster_config import node_config, node_names, plan_nodes, port_count, to_toml
from orbitmq.chaos.topology import (
    CLIENT,
    DOWN,
    UP,
    cut_streams,
    dial_maps,
    directed_streams,
    expand,
    plan_links,
)
from orbitmq.common.local_cluster import ClusterSpec


def _plan(spec: ClusterSpec | None = None):
    spec = spec or ClusterSpec()
    ports = itertools.count(20000)
    nodes = plan_nodes(spec, ports)
    return spec, nodes, plan_links(nodes, ports)


def test_default_nodes_and_unique_addresses():
    spec, nodes, links = _plan()
    assert [n.name for n in nodes] == ["c1", "c2", "c3", "n1", "n2", "broker-a-1", "broker-a-2", "broker-a-3",
                                       "broker-a-4"]
    assert [n.name for n in nodes if n.learner] == ["broker-a-4"]
    addrs = [a for n in nodes for a in (n.addr, n.raft_addr, n.ha_addr) if a] + [lk.listen for lk in links]
    assert len(addrs) == len(set(addrs))
    assert port_count(spec) == len([a for n in nodes for a in (n.addr, n.raft_addr, n.ha_addr) if a])


def test_one_proxy_per_directed_link_of_each_kind():
    _, nodes, links = _plan()
    names = [lk.name for lk in links]
    assert len(names) == len(set(names))
    kinds = {(lk.src, lk.dst): lk.kind for lk in links}
    # client -> 4 brokers + 2 name servers; each broker -> 2 ns + 3 controllers + its non-learner peers
    assert sum(1 for lk in links if lk.src == CLIENT) == 6
    assert kinds[("broker-a-1", "broker-a-2")] == "ha" and ("broker-a-1", "broker-a-4") not in kinds
    assert kinds[("broker-a-4", "broker-a-1")] == "ha"           # a learner follows any master
    assert kinds[("c1", "c2")] == kinds[("c2", "c1")] == "raft"
    assert kinds[("broker-a-2", "c3")] == "grpc" and kinds[("broker-a-2", "n1")] == "grpc"
    assert not any(lk.src.startswith("n") for lk in links)      # name servers dial nobody
    by = {n.name: n for n in nodes}
    assert {lk.upstream for lk in links if lk.dst == "c2"} == {by["c2"].addr, by["c2"].raft_addr}
    assert len(links) == 6 + 4 * 5 + 4 * 3 - 3 + 6


def test_dial_maps_send_each_peer_to_its_own_link():
    _, nodes, links = _plan()
    by = {n.name: n for n in nodes}
    maps = dial_maps(links)
    assert set(maps["c1"]) == {by["c2"].raft_addr, by["c3"].raft_addr}
    assert maps["c1"][by["c2"].raft_addr] != maps["c3"][by["c2"].raft_addr]
    b1 = maps["broker-a-1"]
    assert b1[by["c1"].addr] == next(lk.listen for lk in links if lk.name == "broker-a-1->c1")
    assert b1[by["broker-a-2"].ha_addr] == next(lk.listen for lk in links if lk.name == "broker-a-1->broker-a-2")
    assert set(maps[CLIENT]) == {by[n].addr for n in ("broker-a-1", "broker-a-2", "broker-a-3", "broker-a-4",
                                                      "n1", "n2")}


def test_symmetric_cut_covers_both_directions_of_every_pair():
    _, _, links = _plan()
    cuts = set(cut_streams(links, ["c1"], ["c2", "c3"]))
    assert cuts == {(f"{s}->{d}", st) for s, d in (("c1", "c2"), ("c2", "c1"), ("c1", "c3"), ("c3", "c1"))
                    for st in (UP, DOWN)}


def test_one_way_cut_loses_only_bytes_from_a_to_b():
    _, _, links = _plan()
    # master broker-a-1 -> controllers: its requests upstream; nothing opened by controllers to it
    cuts = set(cut_streams(links, ["broker-a-1"], ["c1"], one_way=True))
    assert cuts == {("broker-a-1->c1", UP)}
    # the reverse direction: the controller's replies on the broker's connection
    assert set(cut_streams(links, ["c1"], ["broker-a-1"], one_way=True)) == {("broker-a-1->c1", DOWN)}
    # raft pair: whichever side dials, c1's bytes are cut on both proxies
    assert set(directed_streams(links, "c1", "c2")) == {("c1->c2", UP), ("c2->c1", DOWN)}


def test_partition_rejects_overlap_and_expand_names():
    _, nodes, links = _plan()
    with pytest.raises(ValueError):
        cut_streams(links, ["c1"], ["c1", "c2"])
    known = [n.name for n in nodes] + [CLIENT]
    assert expand(["broker-a"], known) == ["broker-a-1", "broker-a-2", "broker-a-3", "broker-a-4"]
    assert expand(["controllers", "n2"], known) == ["c1", "c2", "c3", "n2"]
    with pytest.raises(ValueError, match="unknown node"):
        expand(["c9"], known)


def test_spec_overrides_sets_and_fixed_addresses():
    spec = ClusterSpec(broker_sets=["broker-a", "broker-b"], sets={"broker-b": {"replicas": 2, "learners": 0,
                                                                                  "settings": {"ha_max_lag_s": "5"}}},
                       nodes={"c1": {"listen": "127.0.0.9:9878", "raft_addr": "127.0.0.9:9888"},
                              "broker-b-2": {"settings": {"election_priority": "1"}}})
    spec.validate()
    assert node_names(spec)[-2:] == ["broker-b-1", "broker-b-2"]
    _, nodes, links = _plan(spec)
    by = {n.name: n for n in nodes}
    assert by["c1"].addr == "127.0.0.9:9878" and by["c1"].raft_addr == "127.0.0.9:9888"
    assert by["broker-b-2"].settings == {"ha_max_lag_s": "5", "election_priority": "1"}
    assert ("broker-b-1->broker-a-1") not in {lk.name for lk in links}
    with pytest.raises(ValueError):
        ClusterSpec(nodes={"c1": {"port": 1}}).validate()
    with pytest.raises(ValueError):
        plan_nodes(ClusterSpec(nodes={"c7": {}}), itertools.count(1))


def test_node_config_is_valid_toml_for_the_process_config():
    import tomllib

    from orbitmq.broker.config import BrokerConfig
    from orbitmq.common.config import from_dict
    from orbitmq.controller.config import ControllerConfig

    spec, nodes, links = _plan(ClusterSpec(broker_settings={"register_interval_s": "5"}))
    maps = dial_maps(links)
    by = {n.name: n for n in nodes}
    b = from_dict(BrokerConfig, tomllib.loads(to_toml(node_config(by["broker-a-2"], nodes, spec, "/d/b2",
                                                                  maps["broker-a-2"]))))
    assert b.controllers == [by[c].addr for c in ("c1", "c2", "c3")]      # advertised addresses ...
    assert b.dial_map[by["c1"].addr] == maps["broker-a-2"][by["c1"].addr]  # ... dialed through the links
    assert b.ha_address == by["broker-a-2"].ha_addr and b.register_interval_s == 5.0 and not b.ha_learner
    c = from_dict(ControllerConfig, tomllib.loads(to_toml(node_config(by["c2"], nodes, spec, "/d/c2", maps["c2"]))))
    assert c.peers == [by["c1"].raft_addr, by["c3"].raft_addr] and c.raft_addr == by["c2"].raft_addr
    assert set(c.dial_map) == set(c.peers)
