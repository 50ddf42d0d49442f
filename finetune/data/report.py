"""The validation report: which rows were bad and why, so nothing is dropped silently."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from finetune.outputs import DATA_REPORT, write_json


class BadDataError(ValueError):
    """Raised under ``on_bad_rows: fail``; the message lists the first bad rows by file and reason."""


@dataclass
class BadRow:
    row: int
    source: str
    reason: str


@dataclass
class DataReport:
    """Outcome of the validation pass over one split."""

    dataset: str
    split: str
    total: int
    bad: list[BadRow] = field(default_factory=list)
    duplicates: int = 0  # rows that name an audio file an earlier row of the split names too (kept)

    @property
    def kept(self) -> int:
        return self.total - len(self.bad)

    def reasons(self) -> dict[str, int]:
        """Bad rows counted by the first words of their reason ('too long', 'file not found', ...)."""
        return dict(Counter(_reason_kind(b.reason) for b in self.bad))

    def summary(self) -> str:
        head = f"{self.dataset} [{self.split}]: {self.total} rows, {self.kept} usable, {len(self.bad)} bad"
        if not self.bad:
            return head
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(self.reasons().items()))
        return f"{head} ({kinds})"

    def describe_bad_rows(self, limit: int = 20) -> str:
        lines = [f"  row {b.row}: {b.source}: {b.reason}" for b in self.bad[:limit]]
        if len(self.bad) > limit:
            lines.append(f"  ... and {len(self.bad) - limit} more")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "split": self.split,
            "total": self.total,
            "kept": self.kept,
            "bad_count": len(self.bad),
            "reasons": self.reasons(),
            "duplicate_audio_rows": self.duplicates,
            "bad_rows": [asdict(b) for b in self.bad],
        }

    def enforce(self, policy: str) -> None:
        """Stop under ``fail`` when anything is bad; under ``skip`` bad rows were already dropped."""
        if self.bad and policy == "fail":
            raise BadDataError(
                f"{self.summary()}\n{self.describe_bad_rows()}\n"
                "Fix these rows, or set on_bad_rows=skip to drop them (they are counted and written to "
                "data_report.json)."
            )


def _reason_kind(reason: str) -> str:
    return reason.split(":")[0].split("(")[0].strip()


def write_reports(reports: list[DataReport], output_dir: str | os.PathLike) -> Path:
    """Write ``data_report.json`` atomically beside the run's outputs."""
    return write_json(Path(output_dir) / DATA_REPORT, {"splits": [r.to_dict() for r in reports]})
