"""`doctor()`: which isolation layers a sandbox session actually gets on this host.

What it does: starts a session on a (non-strict, throw-away unless given) pool, reads the
layer table the session process reported after hardening itself (the truth, not a guess from
probes), adds the driver's host probe, and returns a frozen `DoctorReport`
(`as_dict()` for JSON, `format()` for people). `qwen-math dev sandbox-doctor` prints it.

What it deliberately does not do: change anything on the host (no cgroup set-up beyond the
driver's own, no sysctl), or decide policy: `minimum_met` just says whether strict mode runs.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from sandbox.isolation import MIN_LAYERS


@dataclasses.dataclass(frozen=True)
class LayerStatus:
    name: str
    active: bool
    detail: str
    cost_ms: float | None = None


@dataclasses.dataclass(frozen=True)
class DoctorReport:
    """Layers of a real session, whether the strict minimum holds, and where it ran."""

    layers: tuple[LayerStatus, ...]
    minimum: tuple[str, ...]
    minimum_met: bool
    uid: int
    python: str
    driver_python: str

    def as_dict(self) -> dict:
        return {
            "minimum": list(self.minimum), "minimum_met": self.minimum_met, "uid": self.uid,
            "python": self.python, "driver_python": self.driver_python,
            "layers": {layer.name: {"active": layer.active, "detail": layer.detail,
                                    "cost_ms": layer.cost_ms} for layer in self.layers},
        }

    def format(self) -> str:
        width = max(len(layer.name) for layer in self.layers)
        rows = [f"{'on ' if layer.active else 'off'}  {layer.name:<{width}}  {layer.detail}"
                for layer in self.layers]
        verdict = ("minimum met (" if self.minimum_met else "MINIMUM MISSING (") + \
            " + ".join(self.minimum) + ")"
        return "\n".join([f"sandbox layers (uid {self.uid}, {self.driver_python}):", *rows, verdict])


def doctor(pool=None) -> DoctorReport:
    """Start one session and report its layers (uses a temporary non-strict pool by default)."""
    from sandbox.pool import SandboxPool

    own = pool is None
    pool = SandboxPool(max_sessions=1, strict=False) if own else pool
    try:
        with pool.session() as session:
            session.start()
            layers = dict(session.layers)
        hello = pool.driver().hello
    finally:
        if own:
            pool.close()
    statuses = tuple(LayerStatus(name, bool(info.get("active")), str(info.get("detail", "")),
                                 info.get("cost_ms")) for name, info in layers.items())
    met = all(layers.get(name, {}).get("active") for name in MIN_LAYERS)
    return DoctorReport(statuses, MIN_LAYERS, met, os.geteuid(), sys.executable,
                        str(hello.get("python", "")))
