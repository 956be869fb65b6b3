"""The throwaway PostgreSQL clusters of the tests (tests/pgcluster.py) end only their own server."""

from __future__ import annotations

import subprocess

from tests.pgcluster import Cluster


def test_close_kills_only_this_clusters_postmaster() -> None:
    cluster = Cluster(password=False)
    try:
        postmaster = cluster.postmaster()
        assert postmaster is not None and str(cluster.data) in postmaster.cmdline()
        cluster.stop()
        # a stale postmaster.pid whose pid now belongs to another process
        with subprocess.Popen(["sleep", "600"]) as bystander:
            (cluster.data / "postmaster.pid").write_text(f"{bystander.pid}\n{cluster.data}\n")
            try:
                assert cluster.postmaster() is None
                cluster.close()
                assert bystander.poll() is None, "close() killed a process that is not this cluster's server"
            finally:
                bystander.kill()
    finally:
        cluster.close()
    assert not cluster.dir.exists()
