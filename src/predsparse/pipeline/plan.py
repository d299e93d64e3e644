"""From a checked config to the run table: one row per training run, one file per distinct pattern.

A study expands into runs: every pattern of every pattern group (net x fan-outs x kind options) is
trained with every seed. A run's pattern is named by a hash of what defines it (net, fan-outs fo_i,
kind, options, layer shapes, seed), so runs of different studies that need the same pattern share one
file, and a dense pattern (which no seed changes) is built once per net.

A group's fan-outs are given (`fanouts`), enumerated at an overall density (`splits`) or allocated
across junctions by a rule (`allocate`: predsparse.methods.allocation). A group of kind random or
unstructured may name a `method` (prune, set, rigl: predsparse.methods.options): its runs start from
the group's patterns, whose fan-outs fix every junction's weight count, and choose their connections
while training.

Semantic checks happen here, before anything runs: fan-outs must give whole fan-ins fi_i for the net,
planned clustering and CSC radices must be buildable, the model must take the net's input size, seeds
and run names must be unique. Each failure is a ConfigError naming the study, the key and the valid
choices.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from predsparse import rundir
from predsparse.catalog import DATASETS, DEFAULT_MODEL, MODELS, fixed_method, input_layouts, pairs
from predsparse.density import dense_junction_weights
from predsparse.defaults import resolve_spec
from predsparse.errors import ConfigError, PredsparseError
from predsparse.io import atomic_write_json, atomic_write_text
from predsparse.methods.options import CONSTRAINTS, options_json
from predsparse.patterns import check_net
from predsparse.patterns.format import check_layer_shapes
from predsparse.pipeline.config import REPO_ROOT, check_schema
from predsparse.provenance import environment
from predsparse.spec import RunSpec
from predsparse.tracking import resolve_uri

# The data layout feeding each (dataset, model, N_1), the classes of each dataset, the method of a fixed
# pattern's runs and each model's job resources (the config's `resources` changing what it names): the
# catalogue's (predsparse.catalog).

# Runs per training job where they can stack (config key `group_runs`; 1 trains every run in a job of its own).
DEFAULT_GROUP_RUNS = 8
FANOUT_KINDS = ("random", "planned", "unstructured")  # kinds built from explicit fan-outs
GROUP_KEYS = {  # pattern options each kind takes
    "dense": (),
    "random": ("fanouts", "splits", "allocate", "generator"),
    "unstructured": ("fanouts", "splits", "allocate"),
    "planned": ("fanouts", "splits", "allocate", "cluster"),
    "csc": ("radices", "compression"),
}
# Run-name label of each random generator other than the default (predsparse.patterns.generate.GENERATORS).
GENERATOR_LABELS = {"sequential": "seq"}
# Tags of every run's spec `extra` that the plan sets; a group's own `extra` may not set them.
RESERVED_EXTRA = ("method", "pattern_id", "compression", "allocation", "sweep")
# How a swept setting is spelled in run names (value after the label); a setting not listed: its name.
SWEEP_LABELS = {"optimizer": "", "lr": "lr", "momentum": "mom", "weight_decay": "wd", "batch_size": "bs",
                "epochs": "ep", "init": "", "variant": "", "update_every": "ue", "fraction": "frac",
                "schedule": "", "stop": "stop", "finetune_epochs": "ft"}


@dataclass(frozen=True)
class PatternRow:
    """One pattern file: everything `predsparse pattern` needs to build it.

    `cluster` and `radices` are in the CLI's canonical spelling ("1:f=8,2:b=8", "8,8/8,8").
    """

    kind: str
    net: tuple[int, ...]
    fanouts: tuple[int, ...]  # empty for csc: its support layers' fan-outs follow from the radices
    seed: int | None  # None for dense and csc: no seed changes them
    cluster: str = ""
    radices: str = ""
    shapes: tuple[tuple[int, ...] | None, ...] = ()
    target: float | None = None  # csc: the compression target the radices were planned for (not in the id)
    allocation: str = ""  # the rule that allocated the fan-outs (predsparse.methods.allocation; not in the id)
    generator: str = ""  # random: a generator other than the default ("sequential"); "" = the default, uniform

    @property
    def pattern_id(self) -> str:
        """`<kind>-<12 hex>`: a hash of everything that defines the pattern (stable across machines).

        The generator enters only when it is not the default, so the ids of default patterns never change.
        """
        payload = {
            "kind": self.kind,
            "net": list(self.net),
            "fanouts": list(self.fanouts),
            "seed": self.seed,
            "cluster": self.cluster,
            "radices": self.radices,
            "shapes": [list(s) if s else None for s in self.shapes],
        }
        if self.generator:
            payload["generator"] = self.generator
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        return f"{self.kind}-{digest[:12]}"

    def cli_args(self) -> list[str]:
        """Arguments of `predsparse pattern` (without -o)."""
        args = ["--net", _joined(self.net, ","), "--kind", self.kind, "--seed", str(self.seed or 0)]
        if self.fanouts:
            args += ["--fanouts", _joined(self.fanouts, ",")]
        if self.generator:
            args += ["--generator", self.generator]
        if self.cluster:
            args += ["--cluster", self.cluster]
        if self.radices:
            args += ["--radices", self.radices]
        if any(self.shapes):
            args += ["--shapes", ",".join(_joined(s, "x") if s else "-" for s in self.shapes)]
        return args

    @property
    def options(self) -> dict[str, str]:
        """The kind's options, as the run table shows them."""
        return {k: v for k, v in (("generator", self.generator), ("cluster", self.cluster), ("radices", self.radices))
                if v}


@dataclass(frozen=True)
class DataTarget:
    """One dataset file under `resources_dir`, and the `predsparse data` arguments that make it."""

    dataset: str
    path: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class Run:
    """One training run: a row of the run table."""

    study: str
    name: str
    pattern: PatternRow
    spec: RunSpec
    resources: dict[str, int] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """The run-table row (what `predsparse plan` prints)."""
        s = self.spec
        return {
            "study": self.study,
            "run": self.name,
            "dataset": s.dataset,
            "variant": s.variant or "",
            "model": s.model,
            "net": list(self.pattern.net),
            "fanouts": list(self.pattern.fanouts),
            "kind": self.pattern.kind,
            "options": self.pattern.options,
            "pattern_id": self.pattern.pattern_id,
            "seed": s.seed,
            "optimizer": s.optimizer,
            "lr": s.lr,
            "momentum": s.momentum,
            "weight_decay": s.weight_decay,
            "batch_size": s.batch_size,
            "epochs": s.epochs,
            "device": s.device,
            "method": s.extra["method"],
            # As summary.csv spells it: the method's options as compact JSON, "" for fixed connections.
            "method_options": options_json(s.method),
            "allocation": s.extra.get("allocation", ""),
            "compression": s.extra.get("compression"),
            "run_id": s.run_id(),
        }


@dataclass(frozen=True)
class RunGroup:
    """One training job: runs trained in one process (`predsparse train --spec A --spec B ...`)."""

    id: str
    runs: tuple[Run, ...]

    @property
    def work(self) -> int:
        """Its runs' connected-layer weights times epochs: the order of its training cost (a step's
        multiply-adds are a multiple of the weights), used to start the largest jobs first."""
        total = 0
        for run in self.runs:
            net, fanouts = run.pattern.net, run.pattern.fanouts
            weights = sum(n * f for n, f in zip(net, fanouts)) if fanouts else \
                sum(a * b for a, b in zip(net, net[1:]))  # csc: at most dense
            total += weights * run.spec.epochs
        return total


def _joined(values, sep: str) -> str:
    return sep.join(str(v) for v in values)


class Plan:
    """A checked config expanded into dataset files, pattern files and runs, with the path of every output."""

    def __init__(self, config: dict, source: str = "config", overrides: dict | None = None):
        check_schema(config, source, overrides)
        if overrides:  # semantic errors below name the config and that it was overridden
            source += " with --config " + " ".join(sorted(_leaf_keys(overrides)))
        self.config = config
        self.source = source
        self.results_dir = str(config.get("results_dir", "results")).rstrip("/") or "/"
        self.resources_dir = str(config.get("resources_dir", "resources")).rstrip("/") or "/"
        self.device = config.get("device", "auto")
        self.tracking_uri = resolve_uri(config.get("tracking_uri"), self.results_dir)
        self.data: dict[str, DataTarget] = {}
        self.patterns: dict[str, PatternRow] = {}
        self._scatter: dict[str, tuple[tuple[str, ...], str]] = {}  # pattern id -> (scatter args, study)
        self.runs: list[Run] = []
        self._checked: dict[PatternRow, float] = {}  # pattern (seed 0) whose options were checked -> compression
        for study, body in config["studies"].items():
            self._expand_study(study, body)
        self._by_key = {(r.study, r.name): r for r in self.runs}

    # ---------------------------------------------------------------- paths
    # Every path of the pipeline is built here; the rules ask (a wildcard name in braces, e.g.
    # PLAN.pattern_path("{pattern_id}"), gives the rule's wildcard path).
    def path(self, name: str) -> str:
        """A file or folder of the results folder: summary.csv, history.csv, run_info.json, report.md,
        report.html, runs, scatter, mlflow_store.ready, mlflow_sync.done."""
        return f"{self.results_dir}/{name}"

    def log_path(self, job: str) -> str:
        return f"{self.results_dir}/logs/{job}.log"

    def benchmark_path(self, job: str) -> str:
        """Snakemake's `benchmark:` file (time and memory) of a job."""
        return f"{self.results_dir}/benchmarks/{job}.tsv"

    def dataset_path(self, dataset: str, stem: str) -> str:
        return f"{self.resources_dir}/{dataset}/{stem}.npz"

    def pattern_path(self, pattern_id: str) -> str:
        return f"{self.results_dir}/patterns/{pattern_id}.npz"

    def scatter_path(self, pattern_id: str) -> str:
        return f"{self.results_dir}/scatter/{pattern_id}.json"

    def spec_path(self, run: Run) -> str:
        return f"{self.results_dir}/specs/{run.study}/{run.name}.json"

    def run_dir(self, run: Run) -> str:
        return f"{self.results_dir}/runs/{run.study}/{run.name}"

    def metrics_path(self, run: Run) -> str:
        return f"{self.run_dir(run)}/{rundir.METRICS}"

    @functools.cached_property
    def groups(self) -> list["RunGroup"]:
        """The training jobs: runs that can train in one stacked step (same dataset file, model, net,
        fan-outs and hyper-parameters: `RunSpec.group_key`, on the CPU), at most
        `group_runs` per job, the others alone. In config order; a group's id hashes its runs' ids."""
        size = int(self.config.get("group_runs", DEFAULT_GROUP_RUNS))
        buckets: dict[tuple, list[Run]] = {}
        for i, run in enumerate(self.runs):
            key = run.spec.group_key()
            if key is None or size < 2 or run.spec.device != "cpu":
                key = ("alone", i)
            else:
                key = (key, tuple(run.pattern.net), tuple(run.pattern.fanouts))
            buckets.setdefault(key, []).append(run)
        groups = []
        for runs in buckets.values():
            parts = -(-len(runs) // max(size, 1))  # balanced: 9 runs at 8 per job are jobs of 4 and 5
            for k in range(parts):
                members = runs[k * len(runs) // parts:(k + 1) * len(runs) // parts]
                digest = hashlib.sha256(" ".join(r.spec.run_id() for r in members).encode()).hexdigest()[:12]
                groups.append(RunGroup(f"g{digest}", tuple(members)))
        return groups

    @functools.cached_property
    def priorities(self) -> dict[str, int]:
        """Each training job's Snakemake priority: its rank by `RunGroup.work`, the largest highest, so
        that among the jobs ready to start, a few cores take the longest first and short ones finish the
        run (without it, the Morse preset once started its 8-run job last)."""
        ranked = sorted(self.groups, key=lambda group: group.work)
        return {group.id: rank for rank, group in enumerate(ranked)}

    def run(self, study: str, name: str) -> Run:
        try:
            return self._by_key[(study, name)]
        except KeyError:
            raise ConfigError(f"{self.source}: no run '{name}' in study '{study}'") from None

    # ---------------------------------------------------------------- what the rules call
    def pattern_args(self, pattern_id: str) -> str:
        """Shell-quoted `predsparse pattern` arguments of a pattern file (without -o)."""
        try:
            return shlex.join(self.patterns[pattern_id].cli_args())
        except KeyError:
            raise ConfigError(f"{self.source}: no pattern '{pattern_id}' in this config") from None

    def scatter_args(self, pattern_id: str) -> str:
        """Shell-quoted `predsparse scatter` options of a pattern's scatter file: "" (every neuron), or
        --real-in/--real-out for a study with `scatter: {neurons: real}` (see `_plan_scatter`)."""
        try:
            return shlex.join(self._scatter[pattern_id][0])
        except KeyError:
            raise ConfigError(f"{self.source}: no pattern '{pattern_id}' in this config") from None

    def data_args(self, path: str) -> str:
        """Shell-quoted `predsparse data` arguments of a dataset file (without -o)."""
        try:
            return shlex.join(self.data[path].args)
        except KeyError:
            raise ConfigError(f"{self.source}: no dataset file '{path}' in this config") from None

    def train_args(self, group: "RunGroup") -> str:
        """Shell-quoted `predsparse train` arguments of a group: --spec FILE --out DIR per run."""
        return shlex.join([arg for run in group.runs for arg in ("--spec", self.spec_path(run), "--out",
                                                                 self.run_dir(run))])

    def write_specs(self, log: str | None = None) -> None:
        """Write every run's spec (JSON) for `predsparse train --spec`.

        A run folder left by an earlier definition of a run (another run id: the config changed its
        hyper-parameters or pattern) is removed first: its checkpoint cannot be resumed, and training
        refuses a folder that belongs to another run.
        """
        notes = []
        for run in self.runs:
            spec, out = run.spec, Path(self.run_dir(run))
            old_spec = out / rundir.SPEC
            if old_spec.is_file() and (old_id := RunSpec.load(old_spec).run_id()) != spec.run_id():
                shutil.rmtree(out)
                notes.append(f"removed {out}: it held run {old_id}, an earlier definition of this run")
            atomic_write_json(self.spec_path(run), spec.to_dict())
        notes.append(f"wrote {len(self.runs)} run specs under {self.results_dir}/specs")
        if log:
            atomic_write_text(log, "\n".join(notes) + "\n")

    def definition(self) -> str:
        """A hash of every spec file's content: changes exactly when some spec file must change."""
        specs = sorted(json.dumps(r.spec.to_dict(), sort_keys=True) for r in self.runs)
        return hashlib.sha256("\n".join(specs).encode()).hexdigest()[:16]

    def prepare_tracking(self, log: str) -> None:
        """Create the MLflow store and one experiment per study before any training job logs to them.

        Many training jobs starting at once on a fresh SQLite store would race to create its schema
        and the experiments; doing it once here leaves them nothing to race for. Tracking never stops
        the pipeline: an unreachable store is noted in `log`, and `predsparse mlflow-sync` catches up later.
        """
        from predsparse.tracking import Store, experiment_name

        names = sorted({experiment_name(run.spec.to_dict()) for run in self.runs})
        try:
            store = Store(self.tracking_uri)
            lines = [f"{name}: experiment {store.experiment_id(name)}" for name in names]
        except Exception as exc:  # noqa: BLE001 - any store failure: train anyway, sync later
            lines = [f"warning: MLflow store {self.tracking_uri} cannot be prepared ({exc}); runs will warn and "
                     "`predsparse mlflow-sync` loads them later"]
        atomic_write_text(log, "\n".join([f"MLflow store {self.tracking_uri}"] + lines) + "\n")

    def write_run_info(self, path: str, log: str | None = None) -> None:
        """Write run_info.json: `run_info()` plus the software that ran it (versions, commit, host)."""
        info = {**self.run_info(), **environment()}
        atomic_write_json(path, info)
        if log:
            atomic_write_text(log, f"wrote {path}: {info['runs']} runs in {len(info['studies'])} studies\n")

    def report_outputs(self, **sources) -> dict[str, list[str]]:
        """The report's files, for the rule to declare (see `report.document.report_files`), by kind.

        Which figures and tables the report draws depends on the summary, so they are known only once a
        summary of exactly this plan's runs exists; until then the rule declares report.md and
        report.html only (it writes the rest all the same), and the next invocation declares them all, so
        that deleting any of them makes Snakemake redraw the report. `sources`: the rule's
        paper/counts/reasons paths, as `report_files` takes them.
        """
        summary, history = self.path("summary.csv"), self.path("history.csv")
        files = {"figures": [], "figure_pdfs": [], "tables": [], "table_csv": [], "table_tex": []}
        if Path(summary).is_file() and Path(history).is_file() and self._summarises_plan(summary):
            from predsparse.report.document import report_files

            files = report_files(summary, history, **sources)
        return {kind: [f"{self.results_dir}/{path}" for path in paths] for kind, paths in files.items()}

    def _summarises_plan(self, summary: str) -> bool:
        """Whether a summary CSV holds exactly this plan's runs (by run id)."""
        import csv

        try:
            with open(summary, newline="") as fh:
                ids = {row["run_id"] for row in csv.DictReader(fh)}
        except (OSError, KeyError, csv.Error):
            return False
        return ids == {run.spec.run_id() for run in self.runs}

    # ---------------------------------------------------------------- run table
    def table(self) -> list[dict[str, Any]]:
        return [run.row() for run in self.runs]

    def run_info(self) -> dict[str, Any]:
        """What the config asks for; the report's 'what was run' and 'deviations' sections read it."""
        studies: dict[str, dict] = {}
        for run in self.runs:
            entry = studies.setdefault(
                run.study,
                {"description": self.config["studies"][run.study].get("description", ""),
                 "dataset": run.spec.dataset, "variant": run.spec.variant, "model": run.spec.model,
                 "runs": 0, "seeds": [], "epochs": []},
            )
            entry["runs"] += 1
            for key, value in (("seeds", run.spec.seed), ("epochs", run.spec.epochs)):
                if value not in entry[key]:
                    entry[key] = sorted(entry[key] + [value])
        return {
            "preset": self.config.get("preset", "custom"),
            "description": self.config.get("description", ""),
            "config": self.source,
            "deviations": list(self.config.get("deviations", [])),
            "device": self.device,
            "tracking_uri": self.tracking_uri,
            "results_dir": self.results_dir,
            "data": {t.path: list(t.args) for t in self.data.values()},
            "runs": len(self.runs),
            "patterns": len(self.patterns),
            "studies": studies,
        }

    # ---------------------------------------------------------------- expansion
    def _expand_study(self, study: str, body: dict) -> None:
        where = f"{self.source}: study '{study}'"
        dataset, model = body["dataset"], body.get("model", DEFAULT_MODEL)
        seeds = body.get("seeds", [0])
        _check_unique(where, "seeds", seeds)
        # Defaults (predsparse.defaults), then the config's training section, then the study's; a list
        # (here or in the study's variant) sweeps that setting: one run per value, for every pattern.
        settings = {**self.config.get("training", {}), **body.get("training", {})}
        for key, values in settings.items():
            if isinstance(values, list):
                _check_unique(where, f"training.{key}", values)
        if isinstance(body.get("variant"), list):
            _check_unique(where, "variant", body["variant"])
        settings["variant"] = [self._variant(where, dataset, body, v) for v in _as_list(body.get("variant"))]
        if len(settings["variant"]) == 1:
            settings["variant"] = settings["variant"][0]
        resources = {**MODELS[model].job_resources, **self.config.get("resources", {}).get(model, {})}
        resources["gpu"] = 1 if self.device == "cuda" else 0
        names: dict[str, str] = {}
        for g, group in enumerate(body["patterns"]):
            self._expand_group(study, body, g, group, settings, resources, names)

    def _expand_group(self, study: str, body: dict, g: int, group: dict, settings: dict, resources: dict,
                      names: dict[str, str]) -> None:
        """The runs of one pattern group: its patterns x seeds x every combination of the swept settings."""
        where = f"{self.source}: study '{study}'"
        gwhere = f"{where}: patterns[{g}]"
        dataset, model = body["dataset"], body.get("model", DEFAULT_MODEL)
        group_seeds = group.get("seeds", body.get("seeds", [0]))
        _check_unique(gwhere, "seeds", group_seeds)
        net = tuple(group.get("net", body.get("net", ())))
        if not net:
            raise ConfigError(f"{gwhere}: no net given; set key 'net' on the study or on the pattern group")
        try:
            check_net(net)
        except PredsparseError as exc:
            raise ConfigError(f"{gwhere}: key 'net': {exc}") from None
        # A group with a net of its own does not inherit the study's layer shapes.
        shapes = self._shapes(gwhere, net, group.get("shapes", None if "net" in group else body.get("shapes")))
        self._check_group_keys(gwhere, group)
        method = group.get("method", {})
        grid = [(run_settings, {**swept, **method_swept}, chosen)
                for run_settings, swept in _grid(settings)
                for chosen, method_swept in _grid(method if isinstance(method, dict) else {"name": method})]
        for pattern, seed in self._patterns(gwhere, group, net, shapes, group_seeds):
            self.patterns[pattern.pattern_id] = pattern
            self._plan_scatter(where, study, body, dataset, model, pattern)
            for run_settings, swept, chosen in grid:
                name = _run_name(group, pattern, "net" in group, seed, swept)
                if name in names:
                    raise ConfigError(
                        f"{where}: run name '{name}' comes out of both {names[name]} and patterns[{g}]; "
                        "remove the repeated entry or give one group a different 'name'"
                    )
                names[name] = f"patterns[{g}]"
                data = self._data_target(gwhere, dataset, model, run_settings["variant"], net)
                extra = {"method": _method_name(group) or fixed_method(pattern.kind), "pattern_id": pattern.pattern_id,
                         "compression": self._checked[_unseeded(pattern)]}
                if pattern.allocation:
                    extra["allocation"] = pattern.allocation
                if swept:  # the settings this run's study sweeps, as MLflow shows them beside the run name
                    extra["sweep"] = ",".join(f"{k}={v}" for k, v in swept.items())
                raw = {
                    "study": study, "run_name": name, "dataset": dataset, "data": data.path,
                    "pattern": self.pattern_path(pattern.pattern_id), "model": model, **run_settings,
                    "seed": seed, "device": self.device, "method": chosen if method else {},
                    "tracking_uri": self.tracking_uri, "preset": self.config.get("preset"),
                    "extra": {**extra, **group.get("extra", {})},
                }
                spec = resolve_spec(raw, where=f"{gwhere}: run '{name}'")
                self.runs.append(Run(study, name, pattern, spec, resources))

    def _check_group_keys(self, gwhere: str, group: dict) -> None:
        reserved = sorted(set(group.get("extra", {})) & set(RESERVED_EXTRA))
        if reserved:
            raise ConfigError(
                f"{gwhere}: key 'extra' sets {reserved}, tags predsparse sets itself ({', '.join(RESERVED_EXTRA)}: "
                "from the group's kind, method, pattern and sweep); name your tags otherwise (choose the method "
                "with key 'method')"
            )
        if "method" in group and group["kind"] not in CONSTRAINTS:
            raise ConfigError(
                f"{gwhere}: key 'method' does not apply to kind '{group['kind']}'; a method starts from a "
                f"pattern of kind {' or '.join(CONSTRAINTS)} (fixed fan-in or unconstrained)"
            )

    def _plan_scatter(self, where: str, study: str, body: dict, dataset: str, model: str, row: PatternRow) -> None:
        """Record how the scatter file of `row` is computed: over every neuron (the default), or, for a study
        with `scatter: {neurons: real}`, over the real neurons of padded layers only (the authors'
        convention): the input neurons the data layout really fills (the dataset's real_inputs) and the
        first num_classes outputs. A layer without padding needs no option, so such patterns stay "every
        neuron". One scatter file per pattern: two studies asking one pattern's scatter differently are
        an error."""
        args: tuple[str, ...] = ()
        if body.get("scatter", {}).get("neurons", "all") == "real":
            info = DATASETS[dataset]
            real_in = info.real_inputs.get(input_layouts(dataset, model).get(row.net[0]))  # not listed: no padding
            if real_in:
                args += ("--real-in", real_in)
            if row.net[-1] > info.num_classes:
                args += ("--real-out", str(info.num_classes))
        planned = self._scatter.setdefault(row.pattern_id, (args, study))
        if planned[0] != args:
            raise ConfigError(
                f"{where}: pattern {row.pattern_id} ({row.kind}, net {list(row.net)}) is also in study "
                f"'{planned[1]}', whose scatter counts {'real neurons' if planned[0] else 'every neuron'}, but "
                f"this one's counts {'real neurons' if args else 'every neuron'}; give both studies the same "
                "'scatter: {neurons: ...}'"
            )

    def _variant(self, where: str, dataset: str, body: dict, variant: str | None) -> str | None:
        """The Morse variant a study's runs use: `variant` (one of the study's), else data.morse's."""
        if dataset != "morse":
            if "variant" in body:
                raise ConfigError(f"{where}: key 'variant' applies to the morse dataset only, not '{dataset}'")
            return None
        from predsparse.data.morse import resolve_params

        morse = self.config.get("data", {}).get("morse")
        if morse is None:
            raise ConfigError(f"{where}: dataset morse needs the section data.morse (variant, per_class, seed)")
        variant = variant or morse["variant"]
        try:
            resolve_params(variant, morse.get("set", {}))
        except PredsparseError as exc:
            key = "variant" if "variant" in body else "data.morse"
            raise ConfigError(f"{where}: key '{key}': {exc}") from None
        return variant

    def _shapes(self, where: str, net: tuple[int, ...], shapes) -> tuple:
        if not shapes:
            return ()
        try:
            return check_layer_shapes(shapes, net)
        except PredsparseError as exc:
            raise ConfigError(f"{where}: key 'shapes': {exc}") from None

    def _data_target(self, where: str, dataset: str, model: str, variant: str | None, net: tuple[int, ...]) -> DataTarget:
        layouts = input_layouts(dataset, model)
        if not layouts:
            valid = sorted(m for d, m in pairs() if d == dataset)
            raise ConfigError(f"{where}: model '{model}' does not take {dataset}; valid models for {dataset}: {valid}")
        if net[0] not in layouts:
            raise ConfigError(
                f"{where}: key 'net' {list(net)} starts with {net[0]} neurons, but model '{model}' on {dataset} "
                f"takes {sorted(layouts)}"
            )
        if net[-1] < DATASETS[dataset].num_classes:
            raise ConfigError(
                f"{where}: key 'net' {list(net)} ends with {net[-1]} outputs, fewer than the "
                f"{DATASETS[dataset].num_classes} classes of {dataset}"
            )
        # A dataset of a single layout takes no --layout, and its file is named without one.
        layout = layouts[net[0]] if len(DATASETS[dataset].layouts) > 1 else None
        if dataset == "morse":
            morse = self.config["data"]["morse"]
            per_class = _joined(morse["per_class"], ",")
            overrides = [f"{name}={_yaml_scalar(value)}" for name, value in sorted(morse.get("set", {}).items())]
            args = ("morse", "--variant", variant, "--per-class", per_class, "--seed", str(morse["seed"]))
            args += tuple(a for item in overrides for a in ("--set", item))
            # Named by everything that defines it, so configs of different sizes never share a file.
            stem = f"{variant}-{per_class.replace(',', '-')}-s{morse['seed']}"
            if overrides:
                stem += "-" + hashlib.sha256(",".join(overrides).encode()).hexdigest()[:8]
            path = self.dataset_path("morse", stem)
        else:
            download = self.config.get("data", {}).get("download", {})
            args = (dataset,) + (("--layout", layout) if layout else ())
            if download.get("root"):
                args += ("--root", str(download["root"]))
            if download.get("offline"):
                args += ("--offline",)
            path = self.dataset_path(dataset, dataset + (f"_{layout}" if layout else ""))
        target = DataTarget(dataset, path, args)
        self.data[path] = target
        return target

    def _patterns(self, where: str, group: dict, net, shapes, seeds) -> list[tuple[PatternRow, int]]:
        """(pattern, training seed) of every run of one group: each pattern (fan-outs or radices, clustering)
        with each seed. A random, planned or unstructured pattern is drawn with the run's seed."""
        kind = group["kind"]
        for key in ("fanouts", "splits", "allocate", "generator", "cluster", "radices", "compression"):
            if key in group and key not in GROUP_KEYS[kind]:
                raise ConfigError(
                    f"{where}: key '{key}' does not apply to kind '{kind}'; {kind} takes "
                    + (", ".join(GROUP_KEYS[kind]) if GROUP_KEYS[kind] else "no pattern options")
                )
        if kind == "dense":
            templates = [PatternRow("dense", net, net[1:], None, shapes=shapes)]
        elif kind == "csc":
            if ("radices" in group) == ("compression" in group):
                raise ConfigError(f"{where}: kind 'csc' needs exactly one of the keys 'radices' (the radices r_l of "
                                  "the support layers) and 'compression' (targets x, radices planned to fit)")
            if shapes:
                raise ConfigError(f"{where}: kind 'csc' takes no 'shapes': its support layers are not the layers of "
                                  f"net {list(net)}")
            if "radices" in group:
                templates = [PatternRow("csc", net, (), None, radices=r, shapes=shapes) for r in _as_list(group["radices"])]
            else:
                templates = [PatternRow("csc", net, (), None, radices=_planned_radices(where, net, x), shapes=shapes,
                                        target=x) for x in _as_list(group["compression"])]
        else:
            given = [key for key in ("fanouts", "splits", "allocate") if key in group]
            if len(given) != 1:
                raise ConfigError(f"{where}: kind '{kind}' needs exactly one of the keys 'fanouts', 'splits' and "
                                  f"'allocate', got {given or 'none'}")
            key = given[0]
            if key == "fanouts":
                fanouts = group["fanouts"] if isinstance(group["fanouts"][0], list) else [group["fanouts"]]
                lists = [(f, "") for f in fanouts]
            elif key == "splits":
                lists = [(f, "") for f in _splits(where, net, group["splits"])]
            else:
                lists = _allocated(where, net, group["allocate"])
            clusters = _as_list(group.get("cluster", "")) if kind == "planned" else [""]
            generators = _generators(where, group)
            templates = []
            for i, (fanouts, rule) in enumerate(lists):
                try:
                    _, fanouts = check_net(net, fanouts)
                except PredsparseError as exc:
                    label = f"{key}[{i}]" if len(lists) > 1 else key
                    raise ConfigError(f"{where}: key '{label}' {list(fanouts)}: {exc}") from None
                templates += [PatternRow(kind, net, fanouts, 0, cluster=c, shapes=shapes, allocation=rule,
                                         generator=g) for c in clusters for g in generators]
        runs = []
        for template in templates:
            template = self._checked_options(where, template)
            runs += [(template if template.seed is None else _with_seed(template, seed), seed) for seed in seeds]
        return runs

    def _checked_options(self, where: str, row: PatternRow) -> PatternRow:
        """Canonicalise and check planned clustering / CSC radices by building them; note the compression."""
        row = _canonical(where, row)
        key = _unseeded(row)
        if key in self._checked:
            return row
        dense = sum(dense_junction_weights(row.net))
        try:
            if row.kind == "planned":
                from predsparse.patterns import generate_pattern
                from predsparse.patterns.generate import parse_clusters

                generate_pattern(row.net, row.fanouts, "planned", 0, shapes=row.shapes or None,
                                 clusters=parse_clusters(row.cluster))
            if row.kind == "csc":
                from predsparse.patterns.csc import csc_weight_count

                weights = csc_weight_count(row.net, row.radices)
            else:
                weights = sum(n * fo for n, fo in zip(row.net[:-1], row.fanouts))
        except PredsparseError as exc:
            option = f"cluster '{row.cluster}'" if row.kind == "planned" else f"radices '{row.radices}'"
            raise ConfigError(f"{where}: key {option} for net {list(row.net)}"
                              + (f", fan-outs {list(row.fanouts)}" if row.fanouts else "") + f": {exc}") from None
        self._checked[key] = round(dense / weights, 4)
        return row


def _leaf_keys(mapping: dict, prefix: str = "") -> list[str]:
    """{'training': {'epochs': 3}} -> ['training.epochs']."""
    keys = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        keys += _leaf_keys(value, name + ".") if isinstance(value, dict) and value else [name]
    return keys


def _yaml_scalar(value) -> str:
    """A generator parameter as `--set NAME=VALUE` spells it (booleans lower-case, as YAML reads them)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _generators(where: str, group: dict) -> list[str]:
    """A random group's generators (key `generator`: one name or a list), the default spelled ""."""
    from predsparse.patterns.generate import DEFAULT_GENERATOR, GENERATORS

    names = _as_list(group.get("generator", DEFAULT_GENERATOR))
    for name in names:
        if name not in GENERATORS:
            raise ConfigError(f"{where}: key 'generator' {name!r} is not a generator; valid: {', '.join(GENERATORS)}")
    _check_unique(where, "generator", names)
    return ["" if name == DEFAULT_GENERATOR else name for name in names]


def _with_seed(row: PatternRow, seed: int) -> PatternRow:
    return dataclasses.replace(row, seed=seed)


def _planned_radices(where: str, net, compression: float) -> str:
    """Radices of the largest CSC net of `net` within the weight budget of `compression`."""
    from predsparse.patterns.csc import csc_plan
    from predsparse.patterns.csc import format_radices

    try:
        return format_radices(csc_plan(net, compression).radices)
    except PredsparseError as exc:
        raise ConfigError(f"{where}: key 'compression' {compression}: {exc}") from None


def _unseeded(row: PatternRow) -> PatternRow:
    return _with_seed(row, 0) if row.seed is not None else row


def _canonical(where: str, row: PatternRow) -> PatternRow:
    """Clustering and radices in one spelling, so equal patterns share an id and a run name."""
    if row.cluster:
        from predsparse.patterns.generate import parse_clusters

        try:
            clusters = parse_clusters(row.cluster)
        except PredsparseError as exc:
            raise ConfigError(f"{where}: key 'cluster': {exc}") from None
        cluster = ",".join(f"{j}:{d}={c}" for j in sorted(clusters) for d, c in sorted(clusters[j].items()) if c > 1)
        row = dataclasses.replace(row, cluster=cluster)
    if row.radices:
        from predsparse.patterns.csc import format_radices, parse_radices

        try:
            radices = format_radices(parse_radices(row.radices))
        except PredsparseError as exc:
            raise ConfigError(f"{where}: key 'radices': {exc}") from None
        row = dataclasses.replace(row, radices=radices)
    return row


def _check_unique(where: str, key: str, values: list) -> None:
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ConfigError(f"{where}: key '{key}' {values} repeats {repeated}; each value must appear once")


def _splits(where: str, net: tuple[int, ...], splits: dict) -> list[list[int]]:
    """Fan-outs of every valid junction split at the requested overall density, or `count` of them."""
    from predsparse.density import valid_splits

    overall, tol = splits["overall"], splits.get("tol", 0.0)
    try:
        found = valid_splits(net, overall, tol)
    except PredsparseError as exc:
        raise ConfigError(f"{where}: key 'splits': {exc}") from None
    if not found:
        raise ConfigError(
            f"{where}: key 'splits': no fan-outs of net {list(net)} give overall density {overall} within "
            f"tol {tol}; raise 'tol' or pick another overall density"
        )
    count = min(splits.get("count", len(found)), len(found))
    # Index i*(n-1)/(count-1), rounded half up: exact at both ends, and at the middle when both are odd.
    if count == 1:  # a single valid split
        return [list(found[0])]
    kept = sorted({(i * (len(found) - 1) + (count - 1) // 2) // (count - 1) for i in range(count)})
    return [list(found[i]) for i in kept]


def _allocated(where: str, net: tuple[int, ...], allocate: dict) -> list[tuple[tuple[int, ...], str]]:
    """(fan-outs, rule) of every (overall density, rule) of an `allocate` key, in that order."""
    from predsparse.methods.allocation import allocate as allocated_fanouts

    try:
        return [(allocated_fanouts(net, overall, rule), rule)
                for overall in _as_list(allocate["overall"]) for rule in _as_list(allocate["rule"])]
    except PredsparseError as exc:
        raise ConfigError(f"{where}: key 'allocate': {exc}") from None


def _method_name(group: dict) -> str:
    """The name of a group's `method` (spelled 'rigl' or {name: rigl, ...}); "" when it has none."""
    method = group.get("method")
    return "" if not method else method if isinstance(method, str) else method["name"]


def _grid(settings: dict) -> list[tuple[dict, dict]]:
    """Every combination of the list-valued settings, in config order: [(the settings with one value of
    each list, {swept key: its value}), ...]; settings without a list give themselves, {} ."""
    swept = [key for key, value in settings.items() if isinstance(value, list)]
    return [({**settings, **dict(zip(swept, values))}, dict(zip(swept, values)))
            for values in itertools.product(*(settings[key] for key in swept))]


def _sweep_parts(swept: dict) -> list[str]:
    """Run-name parts of swept settings: lr0.05, bs64, ep3, sgd, he_dense, baseline, ue10, ..."""
    def text(value):
        return f"{value:g}" if isinstance(value, float) else str(value)
    return [SWEEP_LABELS.get(key, key) + text(value) for key, value in swept.items()]


def _run_name(group: dict, pattern: PatternRow, own_net: bool, seed: int, swept: dict | None = None) -> str:
    """Readable and unique within a study, e.g. random_fo128-8_s0, planned_fo128-8_c1f8-2b8_s0,
    dense_n784-224-10_s0, csc_r8.8-8.8_s0 (the seed of a dense or csc run is its training seed).

    A group with a method is named after it: rigl_fo128-8_s0 starts from a random pattern (fan-in kept),
    rigl-unstructured_fo128-8_s0 from an unstructured one. Allocated fan-outs carry their rule:
    random_paper_fo64-12_s0. A generator other than the default carries its label (GENERATOR_LABELS):
    random_seq_fo128-8_s0. A group's `name` replaces the first part. Settings the study sweeps come
    before the seed (`_sweep_parts`): random_fo128-8_lr0.05_bs64_s0.
    """
    method = _method_name(group)
    default = f"{method}-unstructured" if method and pattern.kind == "unstructured" else method or pattern.kind
    parts = [group.get("name", default)]
    if own_net:
        parts.append("n" + _joined(pattern.net, "-"))
    if pattern.allocation:
        parts.append(pattern.allocation)
    if pattern.generator:
        parts.append(GENERATOR_LABELS.get(pattern.generator, pattern.generator))
    if pattern.kind in FANOUT_KINDS:
        parts.append("fo" + _joined(pattern.fanouts, "-"))
    if pattern.cluster:
        parts.append("c" + pattern.cluster.replace(":", "").replace("=", "").replace(",", "-"))
    if pattern.target is not None:
        parts.append(f"x{pattern.target:g}")
    elif pattern.radices:
        parts.append("r" + pattern.radices.replace(",", ".").replace("/", "-"))
    parts += _sweep_parts(swept or {})
    parts.append(f"s{seed}")
    return "_".join(parts)


def load_plan(config: dict | str | Path, source: str | None = None) -> Plan:
    """A Plan from a config dict (Snakemake's) or a YAML file."""
    if isinstance(config, (str, Path)):
        from predsparse.pipeline.config import read_yaml

        path = Path(config)
        return Plan(read_yaml(path), source or str(path))
    return Plan(config, source or "config")


def plan_for_snakemake(config: dict, configfiles, overrides=None) -> Plan:
    """The Plan of a Snakemake invocation (common.smk).

    With `--configfile`, Snakemake's `config` already holds those files plus any `--config` overrides;
    the files are re-read only to refuse duplicate keys, which YAML would silently drop. Without one,
    the repository's config.yaml is the default, with `--config` overrides on top. `overrides` are the
    `--config` values: Snakemake parses nested ones as strings ('training={epochs: 3}' gives '3'), so
    they are typed again here (`typed_overrides`), and an error in one names the override.
    """
    from predsparse.pipeline.config import DEFAULT_CONFIG, read_yaml, typed_overrides

    files = [Path(f).resolve() for f in configfiles]
    for path in files:
        read_yaml(path)
    overrides = typed_overrides(dict(overrides or {}))
    config = _merged(dict(config), overrides)
    if not files:
        config = _merged(read_yaml(DEFAULT_CONFIG), overrides)
        files = [DEFAULT_CONFIG]
    # Named from the repository root where they live there (the report prints it), else in full.
    names = [str(f.relative_to(REPO_ROOT)) if f.is_relative_to(REPO_ROOT) else str(f) for f in files]
    return Plan(config, ", ".join(names), overrides)


def _merged(base: dict, overrides: dict) -> dict:
    """base with overrides merged in, mapping by mapping (as Snakemake merges --config)."""
    out = dict(base)
    for key, value in overrides.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
