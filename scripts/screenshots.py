"""Regenerate the screenshots in docs/screenshots/ from real bundles (no network; headless Chromium).

    python scripts/screenshots.py [--submissions submissions] [--bundle RUN_DIR] [--out docs/screenshots]
                                  [--chromium /usr/bin/chromium] [--all]

Builds the leaderboard from ``--submissions`` into a temporary directory and saves:
``leaderboard.png`` (1440 px wide), ``leaderboard-390.png`` (a 390 px phone), ``submission.png``
(the first submission's page), and ``report_loss_curve.png`` / ``report_power.png`` (the PNG plots
that ``report.md`` shows, drawn from ``--bundle``, default: the newest submission). Needs the python
``playwright`` package and a Chromium (Debian's /usr/bin/chromium or playwright's own).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]


def find_chromium(explicit: str | None) -> str | None:
    """``explicit``, else Debian's chromium, else None (playwright's own browser)."""
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def newest_bundle(submissions: Path) -> Path | None:
    runs = sorted((p for p in submissions.glob("*/*") if (p / "result.json").is_file()), key=lambda p: p.name)
    return runs[-1] if runs else None


def main(argv: list[str] | None = None) -> int:
    from bench.leaderboard.build import build_site
    from bench.run_plots import LOSS_PNG, POWER_PNG, write_run_plots

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", default=str(REPO / "submissions"), help="submissions directory to build the board from")
    parser.add_argument("--bundle", help="run or submission directory whose report plots are saved (default: the newest submission)")
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshots"), help="where the PNGs go")
    parser.add_argument("--chromium", help="Chromium executable (default: chromium on PATH, else playwright's)")
    parser.add_argument("--all", action="store_true",
                        help="put submissions that break the ranking rules on the board too (a preview, never the public board)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        report = build_site(args.submissions, site, rank_rules=not args.all)
        print(f"built {report.rows} row(s), {len(report.excluded)} excluded", file=sys.stderr)
        bundle = Path(args.bundle) if args.bundle else newest_bundle(Path(args.submissions))
        if bundle is not None:
            plots_dir = Path(tmp) / "plots"
            plots_dir.mkdir()
            for name in ("progress", "power.csv"):
                src = bundle / name
                if src.is_dir():
                    shutil.copytree(src, plots_dir / name)
                elif src.is_file():
                    shutil.copyfile(src, plots_dir / name)
            written = write_run_plots(plots_dir)
            for kind, name in (("loss", LOSS_PNG), ("power", POWER_PNG)):
                if kind in written:
                    shutil.copyfile(plots_dir / name, out / f"report_{name}")
                    print(f"wrote {out / f'report_{name}'}", file=sys.stderr)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=find_chromium(args.chromium), args=LAUNCH_ARGS)
            try:
                for width, name in ((1440, "leaderboard.png"), (390, "leaderboard-390.png")):
                    page = browser.new_page(viewport={"width": width, "height": 900})
                    page.goto((site / "index.html").as_uri())
                    page.screenshot(path=str(out / name), full_page=True)
                    print(f"wrote {out / name}", file=sys.stderr)
                    page.close()
                pages = sorted(site.glob("s/*/*/index.html"))
                if pages:
                    page = browser.new_page(viewport={"width": 1280, "height": 900})
                    page.goto(pages[0].as_uri())
                    page.screenshot(path=str(out / "submission.png"), full_page=True)
                    print(f"wrote {out / 'submission.png'}", file=sys.stderr)
                    page.close()
            finally:
                browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
