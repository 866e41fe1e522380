"""The dbt project as Dagster assets (dagster-dbt), with dbt tests as asset checks."""

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

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


@dbt_assets(manifest=ensure_manifest(), project=clearhouse_dbt,
            dagster_dbt_translator=ClearhouseTranslator())
def clearhouse_dbt_assets(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    with dbt_environment():
        yield from dbt.cli(["build"], context=context).stream()


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(project_dir=clearhouse_dbt, profiles_dir=str(DBT_PROJECT_DIR))
