"""Write a benchmark table as Markdown, CSV and JSON, each with its command and mixest version."""

from __future__ import annotations

import csv
import datetime
import json
import shlex
import sys
from pathlib import Path


def write_results(folder: Path, name: str, records: list[dict], header: str,
                  footer: str, command: str | None = None) -> list[Path]:
    """``name``.md / .csv / .json in ``folder``; every record has a ``markdown`` row.

    ``command`` is what produced them (default: the running benchmark script and its
    arguments). Returns the three paths.
    """
    import mixest

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if command is None:
        command = f"python benchmarks/{Path(sys.argv[0]).name} " + shlex.join(sys.argv[1:])
    meta = {"command": command, "mixest": mixest.__version__,
            "date": datetime.date.today().isoformat(), "note": footer}
    lines = [header, *(r["markdown"] for r in records)]
    (folder / f"{name}.md").write_text(
        f"Produced by `{command}` (mixest {mixest.__version__}, {meta['date']}).\n\n"
        + "\n".join(lines) + f"\n\n{footer}\n")
    fields = [k for k in records[0] if k != "markdown"] if records else []
    with open(folder / f"{name}.csv", "w", newline="") as f:
        f.write(f"# {command} (mixest {mixest.__version__}, {meta['date']})\n")
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)
    rows = [{k: v for k, v in r.items() if k != "markdown"} for r in records]
    (folder / f"{name}.json").write_text(json.dumps({**meta, "rows": rows}, indent=1) + "\n")
    return [folder / f"{name}.{ext}" for ext in ("md", "csv", "json")]
