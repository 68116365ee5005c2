"""Write the boards as Grafana JSON: grafana/dashboards/<uid>.json, one per board.

    python -m grafana.generate                      # regenerate (from the repository root)
    python -m grafana.generate --check              # exit 1 if a committed file differs
    python -m grafana.generate --runbooks-url URL   # where docs/runbooks is served

Needs the Grafana Foundation SDK: pip install -e '.[dashboards]' (also in the test extra).
The files are what the Grafana provisioning in deploy/grafana loads; edit the code, not them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from grafana.board import Board, BoardRef
from grafana.boards import BOARDS

DASHBOARDS = Path(__file__).resolve().parent / "dashboards"
# Where the compose stack serves docs/runbooks (deploy/docker-compose.yml, service runbooks).
DEFAULT_RUNBOOKS_URL = "http://127.0.0.1:8080"


def render(runbooks_url: str = DEFAULT_RUNBOOKS_URL) -> dict[str, str]:
    """File name -> JSON text, for every board."""
    refs = [BoardRef(m.UID, m.TITLE) for m in BOARDS]
    out = {}
    for module in BOARDS:
        board = Board(module.UID, module.TITLE, module.DESCRIPTION, kinds=module.KINDS, boards=refs, runbooks_url=runbooks_url.rstrip("/"))
        module.build(board)
        # Through json once more so that the SDK's objects become plain, sorted JSON.
        data = json.loads(JSONEncoder().encode(board.build()))
        out[f"{module.UID}.json"] = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grafana.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files instead of writing; exit 1 on a difference")
    parser.add_argument("--runbooks-url", default=DEFAULT_RUNBOOKS_URL,
                        help=f"base URL where docs/runbooks/<Alert>.md is served (default: {DEFAULT_RUNBOOKS_URL}, the compose stack's)")
    parser.add_argument("--out", type=Path, default=DASHBOARDS, help="directory to write to (default: grafana/dashboards)")
    args = parser.parse_args(argv)

    rendered = render(args.runbooks_url)
    if args.check:
        stale = [name for name, text in rendered.items() if not (args.out / name).is_file() or (args.out / name).read_text(encoding="utf-8") != text]
        extra = sorted(p.name for p in args.out.glob("*.json") if p.name not in rendered)
        for name in stale:
            print(f"{args.out / name}: differs from what grafana/generate.py makes", file=sys.stderr)
        for name in extra:
            print(f"{args.out / name}: no board generates it", file=sys.stderr)
        if stale or extra:
            print("run: python -m grafana.generate", file=sys.stderr)
            return 1
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in rendered.items():
        (args.out / name).write_text(text, encoding="utf-8")
    for path in args.out.glob("*.json"):
        if path.name not in rendered:
            path.unlink()
    print(f"wrote {len(rendered)} boards to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
