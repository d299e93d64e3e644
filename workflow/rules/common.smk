# Config -> run table. The config (from --configfile, else the repository's config.yaml, plus any
# --config overrides) is checked against workflow/schemas/config.schema.yaml and semantically
# (fan-outs, clustering, seeds, names) before any job starts; a mistake stops here with one message
# naming the study, the key and the valid choices.
import os
import sys
from pathlib import Path

from predsparse.errors import PredsparseError
from predsparse.pipeline import plan_for_snakemake

try:
    PLAN = plan_for_snakemake(config, workflow.overwrite_configfiles, workflow.config_settings.config)
except PredsparseError as exc:  # one line and exit status 2, as `predsparse plan` says it (no Snakemake frames)
    sys.stderr.write(f"predsparse: error: {exc}\n")
    sys.exit(2)
# Every path comes from PLAN (predsparse.pipeline.plan: path, log_path, benchmark_path, ...).
# Every run's metrics.json: what aggregation and MLflow sync wait for.
RUN_METRICS = [PLAN.metrics_path(run) for run in PLAN.runs]
SOFTWARE = "../../environment.yml"  # relative to this rules file


wildcard_constraints:
    study=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    run=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    pattern_id=r"[a-z]+-[0-9a-f]{12}",


# A cluster run asks its tracking server once before it submits anything (predsparse.pipeline.preflight):
# an http(s) server that does not answer stops it here in one line. `onstart` runs in the submitting
# Snakemake only (not in jobs, not for dry runs); local runs train on and sync later, as before.
onstart:
    if workflow.non_local_exec:
        from predsparse.pipeline.preflight import check_tracking_server, cluster_store_warning

        if warning := cluster_store_warning(PLAN.tracking_uri):
            sys.stderr.write(f"predsparse: warning: {warning}\n")
        try:
            check_tracking_server(PLAN.tracking_uri)
        except PredsparseError as exc:
            sys.stderr.write(f"predsparse: error: {exc}\n")
            sys.exit(2)
