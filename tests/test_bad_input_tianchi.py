"""The bad-input corpus for the Tianchi entry points (`meddx submit`, `meddx check-submission` and their `meddx tianchi`
names): a bad test file, run folder or submission is one line naming the file and line, never a traceback."""

from __future__ import annotations

import shutil

import pytest
from test_bad_input import _assert_clean_error
from test_tricks import _tiny

from conftest import run_cli


@pytest.fixture(scope="module")
def seq_run(tmp_path_factory):
    import meddx

    root = tmp_path_factory.mktemp("tianchi-bad")
    cfg = _tiny(root, "seq")
    cfg["train"]["max_epochs"] = 1
    run = meddx.train(cfg)
    lines = [f"{i}|,|{10 + i % 5} 20 30 " for i in range(6)]
    (root / "test.csv").write_text("\n".join(lines) + "\n")
    return root, run.path


BAD_TEST_FILES = {  # test file text -> what the one line must say
    "four_fields.csv": ("0|,|1 2 |,|3 |,|4\n", "4 fields; expected report_ID|,|description[|,|label]"),
    "mixed_fields.csv": ("0|,|1 2 \n1|,|3 4 |,|5 \n", "line 2: 3 fields where the file's first line has 2"),
    "word_token.csv": ("0|,|1 2 \n1|,|3 four 5 \n", "line 2: token 'four' is not a non-negative integer"),
    "empty.csv": ("", "no rows"),
    "blank_description.csv": ("0|,| \n", "line 1: empty description"),
    "one_field.csv": ("0 1 2 3\n", "line 1: 1 fields; expected report_ID|,|description[|,|label]"),
    # these four were tracebacks (UnicodeDecodeError, OverflowError, ValueError)
    "utf16.csv": ("0|,|1 2 \n".encode("utf-16"), "line 1: not UTF-8 text (byte 0); it looks like UTF-16"),
    "binary.csv": (b"0|,|1 2 \n\x89PNG\x00\xff\n", "line 2: not UTF-8 text (byte 9)"),
    "huge_token.csv": ("0|,|1 " + "9" * 30 + " \n", "line 1: token " + "9" * 30 + " is larger than 2^63 - 1"),
    "unicode_digit.csv": ("0|,|1 \u00b2 \n", "line 1: token '\u00b2' is not a non-negative integer"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BAD_TEST_FILES))
@pytest.mark.parametrize("command", [["submit"], ["tianchi", "submit"]])
def test_a_bad_test_file(seq_run, tmp_path, name, command):
    root, run = seq_run
    text, needle = BAD_TEST_FILES[name]
    (tmp_path / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    _assert_clean_error(run_cli(*command, str(run), "--data", str(tmp_path / name), "-o", str(tmp_path / "s.csv")),
                        name, needle)  # fmt: skip
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.slow
def test_bad_run_folders(seq_run, tmp_path):
    root, run = seq_run
    test = str(root / "test.csv")
    _assert_clean_error(run_cli("submit", str(tmp_path / "nowhere"), "--data", test), "nowhere")
    image_like = tmp_path / "no_vocab"
    shutil.copytree(run, image_like)
    (image_like / "vocab.json").unlink()
    _assert_clean_error(run_cli("submit", str(image_like), "--data", test), "not a token-sequence run")
    _assert_clean_error(run_cli("submit", str(run), "--data", str(tmp_path)), "a folder, not a Tianchi file")
    (tmp_path / "a_file").write_text("x")
    for output, needle in (("nowhere/s.csv", "does not exist"), ("a_file/s.csv", "is not a folder"), (".", "a folder")):
        proc = run_cli("tianchi", "submit", str(run), "--data", test, "-o", str(tmp_path / output))
        _assert_clean_error(proc, needle)  # tracebacks naming the temporary file before


@pytest.mark.slow
def test_a_byte_order_mark_stays_out_of_the_first_report_id(seq_run, tmp_path):
    """A BOM-prefixed test file (it made the first id '\\ufeff0', written so into the submission)."""
    root, run = seq_run
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + (root / "test.csv").read_bytes())
    assert run_cli("submit", str(run), "--data", str(bom), "-o", str(tmp_path / "s.csv")).returncode == 0
    assert (tmp_path / "s.csv").read_bytes().startswith(b"0|,|")
    assert run_cli("check-submission", str(tmp_path / "s.csv"), "--data", str(bom)).returncode == 0


@pytest.mark.slow
def test_bad_submissions_are_listed_with_exit_1(seq_run, tmp_path):
    root, run = seq_run
    test = str(root / "test.csv")
    good = tmp_path / "good.csv"
    assert run_cli("submit", str(run), "--data", test, "-o", str(good)).returncode == 0
    lines = good.read_text().splitlines()
    cases = {
        "nan.csv": ([lines[0].rsplit(" ", 1)[0] + " nan", *lines[1:]], "line 1: probabilities must lie in [0, 1]"),
        "short.csv": (lines[:-1], "5 rows but the test file has 6"),
        "separator.csv": ([ln.replace("|,|", ",") for ln in lines], "line 1: expected 'report_ID|,|p0 ... p16'"),
    }
    for name, (body, needle) in cases.items():
        (tmp_path / name).write_text("\n".join(body) + "\n")
        for command in (["check-submission"], ["tianchi", "check"]):
            proc = run_cli(*command, str(tmp_path / name), "--data", test)
            assert proc.returncode == 1 and needle in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    for name, body in (("utf16.csv", good.read_text().encode("utf-16")), ("binary.csv", b"\x89PNG\x00\xff")):
        (tmp_path / name).write_bytes(body)  # a UnicodeDecodeError traceback before
        proc = run_cli("tianchi", "check", str(tmp_path / name), "--data", test)
        assert proc.returncode == 1 and "not UTF-8 text (byte 0)" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
    missing = run_cli("check-submission", str(tmp_path / "absent.csv"), "--data", test)
    assert missing.returncode == 1 and "file not found" in missing.stderr
    _assert_clean_error(run_cli("check-submission", str(good), "--data", str(tmp_path / "no_test.csv")), "no_test.csv")


def _test_and_submission(tmp_path, second_line: str):
    """A two-report test file and a submission whose second line is `second_line` (the first is valid)."""
    (tmp_path / "test.csv").write_text("0|,|1 2 \n1|,|3 4 \n")
    (tmp_path / "s.csv").write_text("0|,|" + " ".join(["0.5"] * 17) + "\n" + second_line + "\n")
    return str(tmp_path / "test.csv"), tmp_path / "s.csv"


@pytest.mark.parametrize("command", [["check-submission"], ["tianchi", "check"]])
def test_a_missing_submission_is_named_once(tmp_path, command):
    """It said '<path>: <path>: file not found'."""
    test, _ = _test_and_submission(tmp_path, "1|,|" + " ".join(["0.5"] * 17))
    absent = tmp_path / "absent.csv"
    proc = run_cli(*command, str(absent), "--data", test)
    assert proc.returncode == 1 and proc.stderr.strip() == f"{absent}: file not found", proc.stderr


@pytest.mark.parametrize("command", [["check-submission"], ["tianchi", "check"]])
def test_a_non_numeric_probability_names_line_field_and_value(tmp_path, command):
    """It quoted the first 60 characters of the line instead of naming the probability."""
    values = ["0.5"] * 17
    values[4] = "0,25"
    test, sub = _test_and_submission(tmp_path, "1|,|" + " ".join(values))
    proc = run_cli(*command, str(sub), "--data", test)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip() == f"{sub}: line 2: probability 5 of 17 (p4) is '0,25', not a number", proc.stderr
