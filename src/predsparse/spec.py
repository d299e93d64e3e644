"""The run spec: everything that defines one training run.

The pipeline writes one spec per run (JSON) from config.yaml; `predsparse train --spec FILE` reads it;
MLflow logs it as the run's params. Validation here is the single place that says what a valid run is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from predsparse.catalog import DATASETS, DEFAULT_MODEL, DEVICES, INITS, MODELS, OPTIMIZERS
from predsparse.errors import ConfigError

MAX_NAME = 200  # characters of a study or run name: each names a folder


# What may differ between the runs of a group (RunSpec.group_key); everything else of their specs is equal.
GROUP_FREE_KEYS = ("study", "run_name", "pattern", "seed", "extra", "tracking_uri", "preset")
# Where a run is tracked, not what it is: left out of its id.
TRACKING_KEYS = ("tracking_uri", "device", "preset")


@dataclass(frozen=True)
class RunSpec:
    """One training run. Paths are strings so the spec round-trips through JSON unchanged."""

    study: str
    run_name: str
    dataset: str
    data: str  # .npz with xtr, ytr, xva, yva, xte, yte
    pattern: str  # pattern file of the connected layers
    model: str = DEFAULT_MODEL
    variant: str | None = None  # Morse variant, recorded with every run
    seed: int = 0
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9  # SGD only
    weight_decay: float = 0.0  # L2 on existing weights only
    init: str = "uniform"  # CL weight initialisation (predsparse.nn.init)
    batch_size: int = 256
    epochs: int = 30
    device: str = "auto"
    # How the connections come about (predsparse.methods.options): {} = fixed before training (pre-defined).
    method: dict = field(default_factory=dict)
    tracking_uri: str | None = None  # None: sqlite:///results/mlflow.db, or MLFLOW_TRACKING_URI
    preset: str | None = None  # the config's preset; names the MLflow experiment (tracking.experiment_name)
    extra: dict = field(default_factory=dict)  # free-form tags (e.g. method, compression) logged as params

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def run_id(self) -> str:
        """Stable id of the run: a hash of everything that defines it except where it is tracked."""
        payload = {k: v for k, v in self.to_dict().items() if k not in TRACKING_KEYS}
        if not payload["method"]:  # runs of fixed connections keep the ids they had before methods existed
            del payload["method"]
        if payload["init"] == "uniform":  # and runs of our init the ids they had before inits were a setting
            del payload["init"]
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        return digest[:16]

    def group_key(self) -> str | None:
        """What runs must share to train together in one stacked step (`predsparse.train_group`):
        everything but GROUP_FREE_KEYS. None for a run that always trains alone (a method that changes
        its connections)."""
        if self.method:
            return None
        return repr(sorted((k, repr(v)) for k, v in self.to_dict().items() if k not in GROUP_FREE_KEYS))

    @property
    def num_classes(self) -> int:
        """Real classes of the dataset (predsparse.catalog); the output layer may be wider."""
        return DATASETS[self.dataset].num_classes

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "run spec") -> "RunSpec":
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a mapping of run settings, got {type(raw).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(names)}")
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING]
        missing = [k for k in required if k not in raw]
        if missing:
            raise ConfigError(f"{where}: missing required key(s) {missing}")
        # The method may be spelled short ('rigl'); it is stored canonical (every option spelled out).
        spec = cls(**{**raw, "method": {}})
        spec.check(where)
        if raw.get("method"):
            from predsparse.methods.options import parse_method

            spec = dataclasses.replace(spec, method=parse_method(raw["method"], spec.epochs, where))
        return spec

    @staticmethod
    def read_raw(path: str | Path) -> dict[str, Any]:
        """The settings of a JSON or YAML run spec file, unvalidated (callers may fill defaults first)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"run spec {path} does not exist")
        text = path.read_text()
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml

                raw = yaml.safe_load(text)
            else:
                raw = json.loads(text)
        except Exception as exc:  # malformed file of either kind
            raise ConfigError(f"run spec {path} cannot be parsed: {str(exc).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"run spec {path}: expected a mapping of run settings, got {type(raw).__name__}")
        return raw

    @classmethod
    def load(cls, path: str | Path) -> "RunSpec":
        """Read and validate a JSON or YAML run spec."""
        return cls.from_dict(cls.read_raw(path), where=str(path))

    def check(self, where: str = "run spec") -> None:
        def choice(key, value, valid):
            if value not in valid:
                raise ConfigError(f"{where}: {key} '{value}' is not one of {list(valid)}")

        choice("dataset", self.dataset, DATASETS)
        choice("model", self.model, MODELS)
        choice("optimizer", self.optimizer, OPTIMIZERS)
        choice("init", self.init, INITS)
        choice("device", self.device, DEVICES)
        for key in ("seed", "batch_size", "epochs"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "seed" else 1):
                raise ConfigError(f"{where}: {key} must be an integer >= {0 if key == 'seed' else 1}, got {value!r}")
        for key in ("lr", "momentum", "weight_decay"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"{where}: {key} must be a finite number >= 0, got {value!r}")
        from predsparse.methods.options import parse_method

        if self.method != parse_method(self.method, self.epochs, where):
            raise ConfigError(f"{where}: method {self.method!r} is not in canonical form; expected "
                              f"{parse_method(self.method, self.epochs, where)!r} (every option spelled out)")
        if self.lr == 0:
            raise ConfigError(f"{where}: lr must be > 0, got 0")
        for key in ("study", "run_name"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value or "/" in value or value.startswith("."):
                raise ConfigError(f"{where}: {key} must be a non-empty name without '/', got {value!r}")
            if len(value) > MAX_NAME:  # it names a folder (and a spec file): file systems stop at 255 bytes
                raise ConfigError(f"{where}: {key} {value[:40]!r}... is {len(value)} characters long; names hold at "
                                  f"most {MAX_NAME}")
