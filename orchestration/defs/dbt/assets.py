"""The dbt project as Dagster assets (dagster-dbt), with dbt tests as asset checks."""

import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, redirect_stdout
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from orchestration.defs.dbt.metadata import mart_metadata
from orchestration.partitions import BOOK_DAYS
from warehouse.connections import dbt_env
from warehouse.settings import get_settings

DBT_PROJECT_DIR = Path(__file__).resolve().parents[3] / "dbt_project"



def _put_dbt_on_path() -> None:
    """dbt lives beside this interpreter (the project's .venv); find it even when the venv is not
    activated, for `dagster dev` and for dagster-dbt's own manifest preparation."""
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


_put_dbt_on_path()
clearhouse_dbt = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
clearhouse_dbt.prepare_if_dev()


def _manifest_is_stale() -> bool:
    manifest = clearhouse_dbt.manifest_path
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    sources = (p for folder in ("models", "macros", "tests", "seeds")
               for p in (DBT_PROJECT_DIR / folder).rglob("*") if p.is_file())
    return any(p.stat().st_mtime > built for p in sources) or (
        (DBT_PROJECT_DIR / "dbt_project.yml").stat().st_mtime > built)


def ensure_manifest() -> Path:
    """`dagster dev` parses the project itself; the CLI, the demo and tests parse it here, again
    whenever a model, macro or test changed since the last parse."""
    if _manifest_is_stale():
        clearhouse_dbt.preparer.prepare(clearhouse_dbt)
    return clearhouse_dbt.manifest_path


class ClearhouseTranslator(DagsterDbtTranslator):
    """dbt sources map to the raw tables the ledger extract materializes (raw/<table>)."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            # File sources name the loader asset that fills them (several tables per asset).
            key = dbt_resource_props.get("meta", {}).get("dagster", {}).get("asset_key")
            return dg.AssetKey(key) if key else dg.AssetKey(["raw", dbt_resource_props["name"]])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "seed":
            return "reference"  # currencies and chain tables the models look up
        path = dbt_resource_props.get("original_file_path", "")
        for layer in ("staging", "intermediate", "marts"):
            if f"models/{layer}/" in path:
                return "finance" if layer == "marts" else layer
        return None


@contextmanager
def dbt_environment() -> Iterator[None]:
    """Point dbt's profile at the configured warehouse for the duration of a command."""
    values = dbt_env(get_settings())
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def dbt_build_args(as_of: str) -> list[str]:
    """`dbt build` closing to the day `as_of` (YYYY-MM-DD; the run's partition key)."""
    try:
        day = date.fromisoformat(as_of)
    except ValueError:
        raise dg.Failure(f"as_of must be a day (YYYY-MM-DD), got {as_of!r}") from None
    return ["build", "--vars", json.dumps({"settlement_as_of": day.isoformat(),
                                           "recon_as_of": day.isoformat()})]


class DbtBuildConfig(dg.Config):
    """print_dbt_log: dagster-dbt writes each of dbt's log lines (some 500 a build) to stdout as
    it streams them, which `dagster dev` keeps as the step's stdout. The CLI and the demo turn
    it off unless --verbose (orchestration/run.py); dbt's own dbt.log, in the invocation's
    folder under dbt_project/target/, keeps every line, and a failed build's errors travel in
    its exception, which the run's failure shows."""

    print_dbt_log: bool = True


@dbt_assets(manifest=ensure_manifest(), project=clearhouse_dbt,
            dagster_dbt_translator=ClearhouseTranslator(), partitions_def=BOOK_DAYS)
def clearhouse_dbt_assets(context: dg.AssetExecutionContext, dbt: DbtCliResource,
                          config: DbtBuildConfig):
    """`dbt build` as of the run's day (its partition key: periods ending before it close,
    breaks age to it). The marts are whole tables, not day slices: a partition's run rebuilds
    them as they stand on that day, and re-running a day gives the same closed statements and
    break ids. The marts' outputs (and their checks, in order) are held until dbt has finished,
    then yielded with their figures (orchestration/defs/dbt/metadata.py)."""
    held: list = []
    with dbt_environment():
        events = dbt.cli(dbt_build_args(context.partition_key), context=context).stream()
        try:
            for event in events if config.print_dbt_log else without_stdout(events):
                if held or _is_mart(event):
                    held.append(event)
                else:
                    yield event
        except Exception:
            yield from held  # what did build still lands; the failure then stops the run
            raise
    marts = [_model_name(e) for e in held if isinstance(e, dg.Output)]
    figures = mart_metadata(get_settings(), [m for m in marts if m])
    for event in held:
        name = _model_name(event) if isinstance(event, dg.Output) else None
        if name is not None and name in figures:
            event = event.with_metadata({**event.metadata, **figures[name]})
        yield event


_END = object()


def without_stdout(events: Iterable) -> Iterator:
    """`events`, each pulled with sys.stdout sent to /dev/null: dagster-dbt prints every dbt log
    line while it parses the next event, with no switch to turn that off. Only the pull is
    muted, not the consumer between events; an error raised by the pull passes through."""
    events = iter(events)
    with open(os.devnull, "w") as devnull:
        while True:
            with redirect_stdout(devnull):
                event = next(events, _END)
            if event is _END:
                return
            yield event


def _model_name(event) -> str | None:
    """The dbt model an event is about: outputs are named model_<project>_<model>."""
    if isinstance(event, dg.Output):
        return event.output_name.removeprefix("model_clearhouse_")
    key = getattr(event, "asset_key", None)
    return key.path[-1] if isinstance(key, dg.AssetKey) else None


def _is_mart(event) -> bool:
    return (_model_name(event) or "").startswith(("fct_", "rpt_"))


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(project_dir=clearhouse_dbt, profiles_dir=str(DBT_PROJECT_DIR))
