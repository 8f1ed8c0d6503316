"""The real kubectl for the install tests: kustomize builds and commands against an emulator.

The install claims are about kubectl itself (`kubectl kustomize`, `kubectl apply -k`,
`kubectl get` with printer columns), so these helpers run the binary; without it
they fail with one clear message rather than skip.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support.kube_emulator import KubeEmulator

MISSING = (
    "kubectl is not on PATH: the install tests need the real kubectl (v1.32, kustomize built in)"
)


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        raise AssertionError(MISSING)
    return found


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize directory` builds; a failed build fails with its error."""
    done = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def write_kubeconfig(emulator: KubeEmulator, path: Path, token: str, namespace: str) -> Path:
    """A kubeconfig whose one context talks to `emulator` with a bearer `token`."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": emulator.url}}],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [
            {
                "name": "emulator",
                "context": {"cluster": "emulator", "user": "admin", "namespace": namespace},
            }
        ],
        "current-context": "emulator",
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def run(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`kubectl --kubeconfig kubeconfig args...`, its output as text."""
    return subprocess.run(
        [kubectl(), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
