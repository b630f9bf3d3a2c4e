"""A small real cluster with request authentication on, for the auth tests and the bench: one
controller (holding users and ACLs, with a bootstrap admin user), one name server, one standalone
broker with `auth_enabled`, optionally a cluster-mode proxy with `auth_enabled` (with `framed`, the
brokers serve the framed protocol too). All share a cluster secret; with `tls`, every node serves and dials TLS with certificates of a throwaway CA
(`self.ca`). Processes are stopped by PID (`stop()`)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from orbitmq.common import net, proc
from orbitmq.common.secrets_file import write_secret_file

ADMIN = ("root", "root-secret-0123456789")


class AuthCluster:
    def __init__(self, root: Path, proxy: bool = False, broker_auth: bool = True, plain_broker: bool = False,
                 tls: bool = False, framed: bool = False) -> None:
        self.root = root
        self.tls = tls
        self.ca = str(root / "tls" / "ca.pem") if tls else ""
        self.children: list[proc.Child] = []
        self.secret = str(write_secret_file(root / "cluster.secret"))
        self.admin_file = root / "admin.cred"
        self.admin_file.write_text(f"{ADMIN[0]}:{ADMIN[1]}\n")
        self.controller = f"127.0.0.1:{net.free_port()}"
        self.namesrv = f"127.0.0.1:{net.free_port()}"
        self.broker = f"127.0.0.1:{net.free_port()}"
        self.proxy = f"127.0.0.1:{net.free_port()}" if proxy else ""
        self.broker_auth = broker_auth
        self.framed = framed      # the broker also serves the framed protocol (remoting_listen)
        self.plain_broker = f"127.0.0.1:{net.free_port()}" if plain_broker else ""   # set broker-plain, auth off

    def _tls_args(self, name: str) -> list[str]:
        if not self.tls:
            return []
        from orbitmq.common.tls_certs import write_cluster_certs

        cert, key = write_cluster_certs(self.root / "tls", {name: []})[name]
        return ["--set", f"tls_cert_file={cert}", "--set", f"tls_key_file={key}", "--set", f"tls_ca_file={self.ca}"]

    def _start(self, name: str, *args: str) -> proc.Child:
        args = (*args, *self._tls_args(name))
        child = proc.start(name, proc.orbitmq_argv(*args), log_path=self.root / f"{name}.log")
        self.children.append(child)
        return child

    def start(self) -> AuthCluster:
        s = f"cluster_secret_file={self.secret}"
        self._start("controller", "controller", "--listen", self.controller,
                    "--raft-addr", f"127.0.0.1:{net.free_port()}", "--data-dir", str(self.root / "ctl"),
                    "--set", s, "--set", f"auth_admin_file={self.admin_file}")
        self._start("namesrv", "namesrv", "--listen", self.namesrv, "--set", s)
        net.wait_for_port(self.controller, 60)
        net.wait_for_port(self.namesrv, 60)
        self._start("broker", "broker", "--listen", self.broker, "--namesrv", self.namesrv,
                    "--store-dir", str(self.root / "broker"), "--set", s, "--set", f"auth_enabled={self.broker_auth}",
                    "--set", f"controllers={self.controller}", "--set", "auth_refresh_s=1.0",
                    *(["--set", "remoting_listen=127.0.0.1:0"] if self.framed else []))
        net.wait_for_port(self.broker, 60)
        if self.plain_broker:
            self._start("broker-plain", "broker", "--listen", self.plain_broker, "--namesrv", self.namesrv,
                        "--store-dir", str(self.root / "broker-plain"), "--broker-set", "broker-plain", "--set", s,
                        *(["--set", "remoting_listen=127.0.0.1:0"] if self.framed else []))
            net.wait_for_port(self.plain_broker, 60)
        if self.proxy:
            self._start("proxy", "proxy", "--mode", "cluster", "--namesrv", self.namesrv, "--listen", self.proxy,
                        "--set", s, "--set", "auth_enabled=true", "--set", f"controllers={self.controller}",
                        "--set", "auth_refresh_s=1.0")
            net.wait_for_port(self.proxy, 60)
        return self

    @contextlib.contextmanager
    def running(self) -> Iterator[AuthCluster]:
        """Started for the `with` block and stopped after it; the processes' last log lines are
        printed if the block fails (a test fixture's set-up included)."""
        try:
            self.start()
            yield self
        except BaseException:
            print(self.logs())
            raise
        finally:
            self.stop()

    def admin(self, *args: str, as_admin: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run `orbitmq admin ARGS` against this cluster (signed as the bootstrap admin user)."""
        cmd = [sys.executable, "-m", "orbitmq.cli.main", "admin", *args, "--controllers", self.controller,
               "--namesrv", self.namesrv]
        if as_admin:
            cmd += ["--credentials-file", str(self.admin_file)]
        env = {**os.environ, "ORBITMQ_TLS_CA": self.ca} if self.tls else None
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)

    def admin_ok(self, *args: str, timeout: float = 90) -> str:
        """`admin(...)`, retried until it succeeds (the controller may still be electing itself)."""
        last: list[subprocess.CompletedProcess] = []

        def ok() -> bool:
            r = self.admin(*args)
            last[:] = [r]
            return r.returncode == 0

        try:
            proc.wait_until(ok, timeout, 0.5, f"orbitmq admin {' '.join(args)}")
        except Exception:
            r = last[0] if last else None
            raise AssertionError(f"admin {args} failed: {r.stdout if r else ''} {r.stderr if r else ''}") from None
        return last[0].stdout

    def logs(self, n: int = 40) -> str:
        return "\n".join(f"--- {c.name} ---\n{c.log_tail(n)}" for c in self.children)

    def stop(self) -> None:
        brokers = [c for c in self.children if c.name in ("proxy", "broker", "broker-plain")]
        proc.stop_all(brokers)
        proc.stop_all([c for c in self.children if c not in brokers])
