"""The cluster file of ``kit up`` (kit/cluster_file.py): its checks name the key and the fix."""

import pytest

import kit
from kit import cluster_file

pytestmark = pytest.mark.fast


def _bad(raw, match):
    with pytest.raises(kit.ClusterFileError, match=match):
        cluster_file.parse(raw)


@pytest.mark.parametrize(
    "raw, match",
    [
        ({"cluster_name": "a", "head": "h", "worker": ["w"]},
         "unknown key 'worker'; did you mean 'workers'"),
        ({"cluster_name": "a", "head": "h", "ssh": {"usr": "me"}},
         "'usr' in ssh; did you mean 'user'"),
        ({"cluster_name": "a", "workers": ["w"]}, "needs 'head'"),
        ({"cluster_name": "a", "head": {"cpus": 2}}, r"head needs 'host'"),
        ({"cluster_name": "a b", "head": "h"}, "cluster_name must be"),
        ({"cluster_name": "a", "head": "h", "workers": ["h"]}, "host h is listed twice"),
        ({"cluster_name": "a", "head": "h", "cpus": 0}, "cpus must be a whole number >= 1"),
        ({"cluster_name": "a", "head": "h", "autoscale": {"min_nodes": 1}}, "needs max_nodes"),
        ({"cluster_name": "a", "head": "h", "ssh": {"key": "k"},
          "autoscale": {"max_nodes": 3, "pool": ["p"]}}, "max_nodes is 3 but there are 1 fixed"),
        ({"cluster_name": "a", "head": "h", "autoscale": {"max_nodes": 2, "pool": ["p"]}},
         "needs ssh.key"),
        ({"cluster_name": "a", "head": "h", "autoscale": {"max_nodes": 2, "provider": "aws"}},
         "provider must be one of ssh, local"),
        ({"cluster_name": "a", "head": "h", "ssh": {"options": {"ControlPath": "x"}}},
         "ControlPath is set by kit"),
        ({"cluster_name": "a", "head": "h", "files": {"~/x": "/no/such/dir"}}, "does not exist"),
    ],
)  # fmt: skip
def test_cluster_file_errors_name_the_key_and_the_fix(raw, match):
    _bad(raw, match)


def test_cluster_file_reads_hosts_and_bounds(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "cluster_name: lab\ncpus: 2\nhead: {host: a, port: 7000}\n"
        "workers: [b, {host: c, cpus: 4, resources: {disk: 1}}]\n"
        "ssh: {user: me, key: ~/.ssh/k, options: {ConnectTimeout: 3}}\n"
        "autoscale: {min_nodes: 3, max_nodes: 4, idle_timeout: 30, pool: [d]}\n"
    )
    spec = cluster_file.load(str(path))
    assert spec.head == cluster_file.Host("a", 2, (), 7000)
    assert [(w.host, w.cpus, w.resources) for w in spec.workers] == [
        ("b", 2, ()), ("c", 4, (("disk", 1),))
    ]  # fmt: skip
    assert spec.autoscale.max_nodes == 4 and spec.autoscale.pool[0].host == "d"
    assert [h.host for h in spec.hosts()] == ["a", "b", "c", "d"]
    path.write_text("cluster_name: lab\nhead: a\nworkers: [b\n")
    with pytest.raises(kit.ClusterFileError, match=r"c.yaml \(line \d+\): not valid YAML"):
        cluster_file.load(str(path))
