"""Model artifacts: weights (a torch state dict), preprocessing and spec, with sha256 checksums.

An artifact is a directory ``<root>/<model>/v<version>/`` holding ``weights.pt``, ``preprocess.json``,
``spec.json``, ``build.json`` (what made it, for versions trained by a job) and ``manifest.json`` (each
file's sha256). The version's checksum is the sha256 of the
manifest, so it commits to every byte. It is written into a temporary directory and renamed into place
in one step: a crash never leaves a half-written version. Loading verifies every checksum first and
reads the weights with ``torch.load(weights_only=True)``: nothing untrusted is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import torch

from driftloop.infra.errors import DriftloopError
from driftloop.infra.spec import ModelSpec
from driftloop.models.architectures import ArchitectureInput, build_architecture
from driftloop.models.preprocess import Preprocessor

FILES = ("weights.pt", "preprocess.json", "spec.json")


class ArtifactError(DriftloopError):
    """An artifact is missing, incomplete, or does not match its checksum."""


@dataclass(frozen=True)
class LoadedModel:
    """A verified model version, ready to predict."""

    model: str
    version: int
    sha256: str
    spec: ModelSpec
    preprocessor: Preprocessor
    network: torch.nn.Module


def artifact_root(location: str) -> Path:
    """The directory for artifacts from a path or ``file://`` URL (shared storage mounts as a path)."""
    parts = urlsplit(location)
    if parts.scheme in {"", "file"}:
        return Path(parts.path if parts.scheme else location).expanduser().absolute()
    raise ArtifactError(
        f"artifact location {location!r}: only paths and file:// URLs are supported; mount shared storage "
        "(NFS, a bucket via a FUSE driver) and set DRIFTLOOP_ARTIFACTS to its path"
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_digest(state: Mapping[str, torch.Tensor]) -> str:
    """The sha256 of a state dict's tensors (names, dtypes, shapes and bytes, in name order): equal weights give
    equal digests whatever the file format of the torch release that saved them."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.numpy().tobytes() if tensor.dtype != torch.bfloat16 else tensor.float().numpy().tobytes())
    return digest.hexdigest()


def write_artifact(
    root: Path,
    spec: ModelSpec,
    version: int,
    network: torch.nn.Module,
    preprocessor: Preprocessor,
    inputs: ArchitectureInput,
    metrics: dict[str, Any],
    build: dict[str, Any] | None = None,
) -> tuple[Path, str]:
    """Write version ``version`` of ``spec.name`` atomically; its directory and checksum. ``build`` (what made
    the version, ``retrain.build.BuildRecord``) goes into ``build.json``, under the manifest's checksum too."""
    target = root / spec.name / f"v{version}"
    if target.exists():
        raise ArtifactError(f"{target} exists already: versions are immutable")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".v{version}-", dir=target.parent))
    try:
        state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
        torch.save(state, staging / "weights.pt")
        (staging / "preprocess.json").write_text(json.dumps(preprocessor.to_json()), encoding="utf-8")
        (staging / "spec.json").write_text(spec.model_dump_json(), encoding="utf-8")
        files = FILES
        if build is not None:
            (staging / "build.json").write_text(json.dumps(build, sort_keys=True, indent=1), encoding="utf-8")
            files = (*FILES, "build.json")
        manifest = {
            "model": spec.name,
            "version": version,
            "architecture": spec.architecture.model_dump(),
            "inputs": {
                "n_numeric": inputs.n_numeric,
                "cardinalities": list(inputs.cardinalities),
                "n_outputs": inputs.n_outputs,
            },
            "files": {name: _sha256(staging / name) for name in files},
            "metrics": metrics,
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, sort_keys=True, indent=1), encoding="utf-8")
        for name in (*files, "manifest.json"):
            with open(staging / name, "rb") as f:
                os.fsync(f.fileno())
        os.rename(staging, target)  # atomic on one filesystem: the version appears whole or not at all
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target, _sha256(target / "manifest.json")


def load_artifact(path: Path, expected_sha256: str, *, device: str = "cpu") -> LoadedModel:
    """Verify and load an artifact; ``ArtifactError`` if anything was altered."""
    manifest_path = path / "manifest.json"
    if not manifest_path.exists():
        raise ArtifactError(f"{path}: no manifest.json: not an artifact, or an incomplete one")
    actual = _sha256(manifest_path)
    if actual != expected_sha256:
        raise ArtifactError(
            f"{path}: manifest sha256 {actual[:12]}… does not match the registry's {expected_sha256[:12]}…; "
            "the artifact was altered: refusing to load it (roll back, or retrain)"
        )
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for name, checksum in manifest["files"].items():
        if not (path / name).exists() or _sha256(path / name) != checksum:
            raise ArtifactError(f"{path / name}: missing or altered (sha256 differs from the manifest); refusing it")
    spec = ModelSpec.model_validate_json((path / "spec.json").read_text(encoding="utf-8"))
    preprocessor = Preprocessor.from_json(json.loads((path / "preprocess.json").read_text(encoding="utf-8")))
    shape = manifest["inputs"]
    inputs = ArchitectureInput(shape["n_numeric"], tuple(shape["cardinalities"]), shape["n_outputs"])
    network = build_architecture(spec.architecture.name, inputs, spec.architecture.params)
    network.load_state_dict(torch.load(path / "weights.pt", map_location=device, weights_only=True))
    network.to(device).eval()
    return LoadedModel(spec.name, int(manifest["version"]), actual, spec, preprocessor, network)
