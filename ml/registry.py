"""Versioned fraud models under HOME/models/<family>/, a champion pointer, promotion rules and
an audit.

A family is one kind of model with its own champion: `payments` (Clearhouse payments, the one
the live API serves; the default) and `paysim` (trained on PaySim-layout benchmark data).

Layout (under HOME/models/<family>/):
    v0001/model.joblib   the fitted model (joblib: a pickle - load only our own files)
    v0001/card.json      data window, feature set and list, metrics, PR curve, reference values,
                         library versions and the artifact's sha256 (checked again on every load)
    champion.json        {"champion": "v0002", "history": ["v0001"]}
    audit.jsonl          one line per promotion, refused promotion and rollback (each also
                         appended to the API database's hash-chained audit_log)

A version directory is written under a temporary name and renamed into place, and the pointer is
replaced by rename, so a reader never sees half a model or half a pointer. Registering, promoting
and rolling back hold an exclusive lock on HOME/models/.lock, so two commands cannot interleave.

Promotion: a challenger replaces the champion only if both were evaluated on the same holdout
(equal holdout_sha256, or the champion re-scored on the challenger's holdout at training time:
the card's `compared`) and the challenger's PR-AUC is at least the champion's plus the margin
(settings.ml_promotion_margin, default 0.01). `force=True` skips both checks (and says so in the
audit). `rollback()` makes the previous champion the champion again.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import hashlib
import json
import os
import platform
import re
import shutil
import tempfile
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path

from warehouse.settings import Settings, get_settings

_VERSION = re.compile(r"^v(\d{4,})$")
FAMILIES = ("payments", "paysim")
LIBRARIES = ("scikit-learn", "polars", "numpy", "joblib", "scipy")


class RegistryError(ValueError):
    """A registry command that cannot be done; the message says why."""


class PromotionRefused(RegistryError):
    pass


class Registry:
    def __init__(self, settings: Settings | None = None, family: str = "payments"):
        if family not in FAMILIES:
            raise RegistryError(f"unknown model family {family!r}; expected one of {FAMILIES}")
        self.settings = settings or get_settings()
        self.family = family
        self.root = self.settings.home_dir / "models" / family

    # --- versions ---------------------------------------------------------------------------

    def register(self, model, fields: dict, extras: dict[str, bytes] | None = None) -> str:
        """Save a fitted model with its card (fields from ml.train.train_candidate) and any extra
        files (e.g. the PR-curve image); returns the new version."""
        import joblib

        missing = sorted({"feature_set", "features", "holdout_sha256", "metrics"} - set(fields))
        if missing:
            raise RegistryError(f"a model card needs the fields {missing}")
        self.root.mkdir(parents=True, exist_ok=True)
        with self._locked():
            number = max((int(m.group(1)) for p in self.root.iterdir()
                          if (m := _VERSION.match(p.name))), default=0) + 1
            name = f"v{number:04d}"
            staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))
            try:
                staging.chmod(0o755)  # mkdtemp makes it 0700; a serving process must read it
                joblib.dump(model, staging / "model.joblib")
                card = {"version": name, "created_at": _now(), "family": self.family,
                        **fields, "libraries": _library_versions(),
                        "artifact_sha256": file_sha256(staging / "model.joblib")}
                (staging / "card.json").write_text(json.dumps(card, indent=2) + "\n")
                for file_name, content in (extras or {}).items():
                    (staging / file_name).write_bytes(content)
                staging.rename(self.root / name)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        return name

    def card(self, name: str) -> dict:
        path = self.root / name / "card.json"
        if not _VERSION.match(name) or not path.is_file():
            raise RegistryError(f"no model version {name!r} under {self.root}")
        return json.loads(path.read_text())

    def load(self, name: str):
        """The fitted model of a version, after checking its sha256 against the card."""
        import joblib

        card = self.card(name)
        path = self.root / name / "model.joblib"
        if file_sha256(path) != card["artifact_sha256"]:
            raise RegistryError(f"{path} does not match the sha256 in its card: refusing to load")
        return joblib.load(path)

    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        found = [p.name for p in self.root.iterdir() if _VERSION.match(p.name)]
        return sorted(found, key=lambda v: int(v[1:]))

    # --- champion ---------------------------------------------------------------------------

    def champion(self) -> str | None:
        return self._pointer()["champion"]

    def promote(self, name: str, *, force: bool = False, margin: float | None = None) -> dict:
        margin = self.settings.ml_promotion_margin if margin is None else margin
        challenger = self.card(name)
        with self._locked():
            pointer = self._pointer()
            current = pointer["champion"]
            entry = {"action": "promote", "version": name, "previous": current, "forced": force,
                     "margin": margin, "challenger_pr_auc": challenger["metrics"]["pr_auc"]}
            reason: str | None
            if name == current:
                reason = f"{name} is already the champion"
            else:
                reason = None if force else self._refusal(challenger, current, margin, entry)
            if reason:
                self._audit({**entry, "outcome": "refused", "reason": reason})
                raise PromotionRefused(reason)
            history = pointer["history"] + ([current] if current else [])
            # Audited first: no change of champion without its audit entry.
            line = self._audit({**entry, "outcome": "promoted"})
            self._write_pointer({"champion": name, "history": history})
            return line

    def _refusal(self, challenger: dict, current: str | None, margin: float,
                 entry: dict) -> str | None:
        if current is None:
            return None
        champion = self.card(current)
        if champion["holdout_sha256"] == challenger["holdout_sha256"]:
            champion_pr_auc = champion["metrics"]["pr_auc"]
        elif current in challenger.get("compared", {}):
            # The champion re-scored on the challenger's holdout when the challenger was trained.
            champion_pr_auc = challenger["compared"][current]["pr_auc"]
        else:
            return (f"{challenger['version']} and the champion {current} were evaluated on "
                    "different holdouts and the champion was not scored on the challenger's; "
                    "their metrics are not comparable (use --force to promote anyway)")
        entry["champion_pr_auc"] = champion_pr_auc
        needed = champion_pr_auc + margin
        if challenger["metrics"]["pr_auc"] < needed:
            return (f"{challenger['version']} PR-AUC {challenger['metrics']['pr_auc']:.4f} does "
                    f"not beat the champion {current} ({champion_pr_auc:.4f}) on the same "
                    f"holdout by the margin {margin} (needs >= {needed:.4f})")
        return None

    def rollback(self) -> dict:
        with self._locked():
            pointer = self._pointer()
            if not pointer["history"]:
                raise RegistryError("no previous champion to roll back to")
            previous = pointer["history"][-1]
            line = self._audit({"action": "rollback", "version": previous,
                                "previous": pointer["champion"], "outcome": "rolled_back"})
            self._write_pointer({"champion": previous, "history": pointer["history"][:-1]})
            return line

    def audit_log(self) -> list[dict]:
        path = self.root / "audit.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    # --- files ------------------------------------------------------------------------------

    def _pointer(self) -> dict:
        path = self.root / "champion.json"
        return json.loads(path.read_text()) if path.is_file() else {"champion": None,
                                                                    "history": []}

    def _write_pointer(self, pointer: dict) -> None:
        _atomic_write(self.root / "champion.json", json.dumps(pointer, indent=2) + "\n")

    def _audit(self, entry: dict) -> dict:
        line = {"at": _now(), "by": _user(), **entry}
        # First into the platform's hash-chained audit_log (`clearhouse audit verify`, GET
        # /audit-log): a champion decides which live payments are blocked.
        _record_in_audit_log(self.settings, self.family, line)
        # One short line with O_APPEND, flushed and fsynced: appends never interleave or vanish.
        with (self.root / "audit.jsonl").open("a") as fh:
            fh.write(json.dumps(line, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return line

    @contextlib.contextmanager
    def _locked(self):
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


_AUDIT_ACTIONS = {"promoted": "fraud_model.promoted", "refused": "fraud_model.promotion_refused",
                  "rolled_back": "fraud_model.rolled_back"}


def _record_in_audit_log(settings: Settings, family: str, line: dict) -> None:
    """Append a registry decision to the API database's hash-chained audit_log, in its own
    transaction. Skipped only when that database has no audit_log (not migrated: a registry
    used without the API, e.g. PaySim models on a laptop); audit.jsonl keeps the line anyway."""
    from sqlalchemy import inspect
    from sqlalchemy.orm import Session

    from warehouse import audit
    from warehouse.connections import oltp_engine

    engine = oltp_engine(settings)
    if not inspect(engine).has_table("audit_log"):
        return
    details = {k: v for k, v in line.items() if k not in ("at", "by")}
    with Session(engine) as session, session.begin():
        audit.record(session, actor=f"cli:{line['by']}",
                     action=_AUDIT_ACTIONS.get(line["outcome"], "fraud_model." + line["outcome"]),
                     resource_type="fraud_model", resource_id=f"{family}/{line['version']}",
                     details=details, at=datetime.fromisoformat(line["at"]))


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it 0600
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _library_versions() -> dict[str, str]:
    return {"python": platform.python_version(),
            **{name: package_version(name) for name in LIBRARIES}}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "unknown"
