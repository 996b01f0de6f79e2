"""eval/check_docs.py: every number of docs/results traces to the results files its table cites."""

import importlib.util
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("check_docs", REPO / "eval" / "check_docs.py")
check_docs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_docs)

PAGE = """# A results page

Source: results/run.json

| method | x2 | x3.2 |
|---|---|---|
| cubic | 30.11 / 26.98 | 27.29 |
| `v9=pretrained/arssr_rdn_v9.safetensors` | **31.81** | 28.62 |
"""
RECORDS = ('[{"method": "cubic", "scale": 2.0, "psnr": 30.1149, "psnr_mask": 26.9751},'
           ' {"method": "cubic", "scale": 3.2, "psnr": 27.2871},'
           ' {"method": "v9", "scale": 2.0, "psnr": 31.8077}, {"method": "v9", "scale": 3.2, "psnr": 28.6185}]')


def small_repo(tmp_path: Path, page: str = PAGE) -> Path:
    (tmp_path / "results").mkdir(parents=True)
    (tmp_path / "results" / "run.json").write_text(RECORDS)
    (tmp_path / "docs" / "results").mkdir(parents=True)
    (tmp_path / "docs" / "results" / "page.md").write_text(page)
    return tmp_path


def test_the_repositorys_results_pages_trace_to_their_files(capsys):
    assert check_docs.main([]) == 0, capsys.readouterr().err
    pages = sorted((REPO / "docs" / "results").glob("*.md"))
    counts = [check_docs.check_page(page, REPO)[1] for page in pages]
    assert len(pages) >= 4 and min(counts) > 0  # every page has checked tables: the check cannot pass empty


def test_a_number_changed_by_hand_in_a_copy_of_the_docs_fails(tmp_path, capsys):
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    shutil.copytree(REPO / "eval" / "results", tmp_path / "eval" / "results")
    page = tmp_path / "docs" / "results" / "isotropic.md"
    text = page.read_text()
    assert "**32.46 / 29.28**" in text  # v10 at x2 on Colin27, k-space LR
    page.write_text(text.replace("**32.46 / 29.28**", "**32.46 / 29.38**"))
    assert check_docs.main(["--root", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert "isotropic.md" in error and "29.38 is not in eval/results/default_v10/colin27_kspace/results.md" in error
    page.write_text(text)
    assert check_docs.main(["--root", str(tmp_path)]) == 0


def test_numbers_match_after_rounding_to_the_digits_shown(tmp_path):
    root = small_repo(tmp_path)
    assert check_docs.check_page(root / "docs/results/page.md", root) == ([], 7)
    # the file holds 30.1149 (30.11 at two decimals, not 30.12) and 31.8077 (31.81, not 31.80)
    for line, shown, wrong in ((7, "30.11 / 26.98", "30.12"), (8, "**31.81**", "31.80")):
        root = small_repo(tmp_path / wrong, PAGE.replace(shown, shown.replace(shown.strip("*").split(" /")[0], wrong)))
        errors, _ = check_docs.check_page(root / "docs/results/page.md", root)
        assert errors == [f"docs/results/page.md:{line}: {wrong} is not in results/run.json (Source line 3)"]


def test_backticks_are_not_checked_and_scales_are_numbers():
    assert check_docs.shown_numbers("| `v9=arssr_rdn_v9` at x3.2 | 31.81 / 28.47, Dice 0.9268 |") == [
        "3.2", "31.81", "28.47", "0.9268"]


def test_a_table_without_a_source_or_with_a_missing_source_fails(tmp_path):
    root = small_repo(tmp_path, PAGE.replace("Source: results/run.json\n", ""))
    errors, _ = check_docs.check_page(root / "docs/results/page.md", root)
    assert errors == ["docs/results/page.md:4: table without a Source line before it"]
    root = small_repo(tmp_path / "missing", PAGE.replace("results/run.json", "results/gone.json"))
    errors, _ = check_docs.check_page(root / "docs/results/page.md", root)
    assert errors[0] == "docs/results/page.md:3: source results/gone.json does not exist"


def test_numbers_in_scientific_notation_round_to_their_significant_digits():
    values = (17095.3, 0.00493, 1.78e6)
    assert check_docs.is_found("1.71e+04", values) and check_docs.is_found("4.9e-03", values)
    assert check_docs.is_found("1.78e+06", values) and not check_docs.is_found("1.72e+04", values)
    assert check_docs.shown_numbers("| a | 1.71e+04 [11.2, 1.7E+09] | `3e-4` |") == ["1.71e+04", "11.2", "1.7E+09"]
