"""A real Prometheus server for tests, on loopback, in a temporary directory.

The controller's verdicts depend on what Prometheus really answers: staleness,
rate() extrapolation, recording rules, empty results while a server restarts.
`PrometheusServer` runs the ``prometheus`` binary of Debian's package with a
generated configuration (1s scrape and evaluation intervals so that tests move
fast), its own TSDB directory and a retention long enough for backfilled history
of any age. It can be stopped and restarted on the same port and TSDB mid-test,
and it can be given history before or while it runs (see `backfill`).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self
from urllib.parse import urlsplit

import httpx
import yaml

from .backfill import (
    Series,
    create_blocks_from_openmetrics,
    create_blocks_from_rules,
    move_blocks,
    write_openmetrics,
)

INSTALL_HINT = (
    "install Debian's prometheus package, which provides both binaries: "
    "apt-get update && apt-get install -y prometheus"
)
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


class PrometheusNotInstalled(RuntimeError):
    """The prometheus or promtool binary is not on PATH."""


class PrometheusStartError(RuntimeError):
    """The server exited or did not become ready; the message ends with its log."""


@dataclass(frozen=True)
class PrometheusBinaries:
    """Where the prometheus and promtool binaries are, and the server's version line."""

    prometheus: Path
    promtool: Path
    version: str

    @classmethod
    def locate(cls) -> PrometheusBinaries:
        """Find both binaries on PATH, or raise PrometheusNotInstalled saying how to get them."""
        prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
        missing = [
            name for name, path in (("prometheus", prometheus), ("promtool", promtool)) if not path
        ]
        if prometheus is None or promtool is None:
            raise PrometheusNotInstalled(
                f"{' and '.join(missing)} not found on PATH; {INSTALL_HINT}"
            )
        completed = subprocess.run(
            [prometheus, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
        version = (
            (completed.stdout or completed.stderr).splitlines()[0]
            if completed.returncode == 0
            else ""
        )
        return cls(Path(prometheus), Path(promtool), version)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _scrape_address(target: str) -> str:
    parts = urlsplit(target if "://" in target else f"http://{target}")
    if parts.hostname not in _LOOPBACK_HOSTS or parts.port is None:
        raise ValueError(f"scrape targets must be loopback host:port, not {target!r}")
    return f"{parts.hostname}:{parts.port}"


class PrometheusServer:
    """One Prometheus process with its own config, TSDB and log under `work_dir`.

    `scrape_targets` maps a job name to ``host:port`` targets (loopback only),
    scraped at `scrape_interval` on ``/metrics``; `rule_files` are loaded and
    evaluated every `evaluation_interval`. The port is picked on first start and
    kept across restarts.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        binaries: PrometheusBinaries,
        scrape_targets: Mapping[str, Sequence[str]] | None = None,
        rule_files: Sequence[Path] = (),
        port: int | None = None,
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        retention: str = "3650d",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.work_dir = work_dir
        self.binaries = binaries
        self.tsdb_path = work_dir / "tsdb"
        self.config_path = work_dir / "prometheus.yml"
        self.log_path = work_dir / "prometheus.log"
        self.scrape_targets = {
            job: [_scrape_address(target) for target in targets]
            for job, targets in (scrape_targets or {}).items()
        }
        self.rule_files = [Path(path).resolve() for path in rule_files]
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.retention = retention
        self.extra_args = list(extra_args)
        self._fixed_port = port is not None
        self._port = port
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._http = httpx.Client(timeout=10.0)

    # --- lifecycle ---------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server has no port before its first start")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def cpu_seconds(self) -> float:
        """User plus system CPU the running server has used so far (Linux /proc)."""
        if self._process is None:
            raise RuntimeError("the server is not running")
        fields = Path(f"/proc/{self._process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def write_config(self) -> Path:
        """Write the configuration file the server starts (or reloads) with."""
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": self.scrape_interval,
                # Prometheus refuses a timeout longer than the interval.
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.evaluation_interval,
            },
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": list(targets)}]}
                for job, targets in self.scrape_targets.items()
            ],
        }
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        return self.config_path

    def start(self, timeout: float = 30.0) -> Self:
        """Start the server and wait for /-/ready; raise PrometheusStartError if it fails."""
        if self.running:
            raise RuntimeError("the server is already running")
        self.write_config()
        self.tsdb_path.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self._fixed_port else 3
        for attempt in range(1, attempts + 1):
            if self._port is None:
                self._port = free_port()
            try:
                self._launch(timeout)
                return self
            except PrometheusStartError as error:
                # Another process may take the probed port before Prometheus binds it.
                if attempt == attempts or "address already in use" not in str(error):
                    raise
                self._port = None
        raise AssertionError("unreachable")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server: SIGTERM, then SIGKILL after `timeout` seconds."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self, timeout: float = 30.0) -> Self:
        """Stop and start again on the same port and TSDB."""
        self.stop()
        return self.start(timeout)

    def reload(self) -> None:
        """Rewrite the configuration and make the running server load it (SIGHUP)."""
        self.write_config()
        if self._process is None or not self.running:
            raise RuntimeError("the server is not running")
        self._process.send_signal(signal.SIGHUP)

    def close(self) -> None:
        self.stop()
        self._http.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def log_tail(self, lines: int = 20) -> str:
        """The log's error lines (Prometheus prints usage after a flag error), then its end."""
        if not self.log_path.exists():
            return ""
        log = self.log_path.read_text(errors="replace").splitlines()
        errors = [line for line in log if "error" in line.lower()][-10:]
        return "\n".join([*errors, "...", *log[-lines:]])

    def _launch(self, timeout: float) -> None:
        command = [
            str(self.binaries.prometheus),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.tsdb_path}",
            f"--storage.tsdb.retention.time={self.retention}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            *self.extra_args,
        ]
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                self.stop()
                raise PrometheusStartError(
                    f"prometheus exited with {code} before it was ready; command: "
                    f"{' '.join(command)}\n{self.log_tail()}"
                )
            with contextlib.suppress(httpx.TransportError):
                if self._http.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.05)
        self.stop()
        raise PrometheusStartError(f"prometheus not ready after {timeout}s:\n{self.log_tail()}")

    # --- history -----------------------------------------------------------

    def backfill(self, series: Iterable[Series]) -> list[str]:
        """Add history through promtool's OpenMetrics import; a running server restarts."""
        staging = self._staging_dir()
        source = write_openmetrics(series, staging / "history.om")
        create_blocks_from_openmetrics(self.binaries.promtool, source, staging)
        source.unlink()
        return self._adopt_blocks(staging)

    def backfill_rules(
        self,
        rule_files: Sequence[Path],
        *,
        start: float,
        end: float,
        eval_interval: str = "60s",
    ) -> list[str]:
        """Evaluate recording rules over past data of this server and load the results.

        Rules that read the output of other rules need their own later call.
        """
        if not self.running:
            raise RuntimeError("rule backfill queries the running server: start it first")
        staging = self._staging_dir()
        create_blocks_from_rules(
            self.binaries.promtool,
            url=self.url,
            rule_files=rule_files,
            start=start,
            end=end,
            output_dir=staging,
            eval_interval=eval_interval,
        )
        return self._adopt_blocks(staging)

    def _staging_dir(self) -> Path:
        staging = self.work_dir / "staging"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        return staging

    def _adopt_blocks(self, staging: Path) -> list[str]:
        was_running = self.running
        if was_running:
            self.stop()
        moved = move_blocks(staging, self.tsdb_path)
        if was_running:
            self.start()
        return moved

    # --- queries -----------------------------------------------------------

    def _api(self, path: str, params: Mapping[str, str]) -> Any:
        response = self._http.post(f"{self.url}/api/v1/{path}", data=dict(params))
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise RuntimeError(f"{path} {dict(params)} failed ({response.status_code}): {body}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query; the raw ``result`` list (``metric`` and ``value`` per series)."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        data = self._api("query", params)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def query_range(
        self, expr: str, *, start: float, end: float, step: float
    ) -> list[dict[str, Any]]:
        """A range query; the raw ``result`` list (``metric`` and ``values`` per series)."""
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step}"}
        return list(self._api("query_range", params)["result"])

    def value(self, expr: str, at: float | None = None) -> float | None:
        """The single value of an instant query, None when it returns nothing."""
        result = self.query(expr, at)
        if not result:
            return None
        if len(result) > 1:
            raise ValueError(f"{expr} returned {len(result)} series, expected one")
        return float(result[0]["value"][1])

    def wait_for(
        self,
        expr: str,
        condition: Callable[[float], bool] = lambda value: not math.isnan(value),
        *,
        timeout: float = 30.0,
        interval: float = 0.25,
    ) -> float:
        """Poll an instant query until its single value meets `condition`; return that value."""
        deadline = time.monotonic() + timeout
        last: float | None = None
        while True:
            last = self.value(expr)
            if last is not None and condition(last):
                return last
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{expr} did not meet the condition in {timeout}s; last value {last}"
                )
            time.sleep(interval)
