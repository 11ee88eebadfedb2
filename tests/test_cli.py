"""cli.py, end to end in a subprocess: every user error is one line on stderr and exit status 2; good runs
print samples, write metrics and are reproducible from the seed.

Every run is a few dozen steps of a small model, well under 2 s.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from rnnlab.cli import build_parser, given_settings
from rnnlab.training.config import SETTINGS, default_of

pytestmark = pytest.mark.slow      # runs rnnlab as a process


def rnnlab(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rnnlab.cli", *args], cwd=cwd, capture_output=True,
                          text=True, encoding="utf-8", timeout=60)


@pytest.fixture
def files(tmp_path):
    """Bad and good input files in a temporary directory (the CLI runs with it as the working directory)."""
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.txt").write_bytes(b"  \n\n\t \n")
    (tmp_path / "latin1.txt").write_bytes(b"\xff\xfe\x00bad")
    (tmp_path / "short.txt").write_text("hello world\n\nthis is short\n", encoding="utf-8")  # 27 chars, a stream
    (tmp_path / "adir").mkdir()
    return tmp_path


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit status 2, exactly one line on stderr naming the problem, no traceback, and nothing on stdout: the
    mistake is caught before any training starts, not after minutes of it."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stdout == "", result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stderr.endswith("\n")
    assert "Traceback" not in result.stderr + result.stdout
    assert lines[0].startswith("rnnlab")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# --- user errors ---------------------------------------------------------------------------------------


BAD_INPUTS = {
    "missing file": (["--dataset", "nope.txt"], ["'nope.txt' not found", "UTF-8 text file"]),
    "empty file": (["--dataset", "empty.txt"], ["empty or only whitespace"]),
    "whitespace-only file": (["--dataset", "blank.txt"], ["empty or only whitespace"]),
    "undecodable bytes": (["--dataset", "latin1.txt"], ["not valid UTF-8", "iconv"]),
    "empty directory": (["--dataset", "adir"], ["holds no files"]),
    "unknown dataset name": (["--dataset", "dinosaurs"], ["'dinosaurs' not found", "dinos, shakespeare"]),
    "unknown data mode": (["--data_mode", "words"], ["--data_mode", "invalid choice"]),
    "unknown cell": (["--cell", "transformer"], ["--cell", "invalid choice"]),
    "unknown init": (["--init", "xavier"], ["--init", "invalid choice", "keras"]),
    "forget bias without forget gate": (["--cell", "gru", "--forget_bias", "1"], ["--forget_bias", "LSTM only"]),
    "unknown optimizer": (["--optimizer", "lbfgs"], ["--optimizer", "invalid choice", "adam"]),
    "learning rate 0": (["--learning_rate", "0"], ["--learning_rate must be > 0"]),
    "learning rate -1": (["--learning_rate", "-1"], ["--learning_rate must be > 0"]),
    "hidden size 0": (["--hidden_size", "0"], ["--hidden_size must be > 0"]),
    "hidden size -4": (["--hidden_size", "-4"], ["--hidden_size must be > 0"]),
    "temperature 0": (["--temperature", "0"], ["--temperature must be > 0"]),
    "temperature -1": (["--temperature", "-1"], ["--temperature must be > 0"]),
    "seq_length > corpus": (["--dataset", "short.txt", "--seq_length", "1000"],
                            ["--seq_length 1000", "the text has 27"]),
    "iterations 0": (["--iterations", "0"], ["--iterations must be > 0"]),
    "iterations -5": (["--iterations", "-5"], ["--iterations must be > 0"]),
    "batch size 0": (["--batch_size", "0"], ["--batch_size must be > 0"]),
    "non-numeric value": (["--hidden_size", "big"], ["--hidden_size", "invalid int value"]),
    "unknown flag": (["--bogus", "1"], ["unrecognized arguments: --bogus"]),
    "metrics file under a file": (["--metrics_file", "short.txt/m.jsonl"], ["cannot be written"]),
    "metrics file is a directory": (["--metrics_file", "adir"], ["--metrics_file", "adir"]),
    "sample length 0": (["--dataset", "short.txt", "--seq_length", "5", "--sample_length", "0"],
                        ["--sample_length must be > 0"]),
    "num_samples -1": (["--num_samples", "-1"], ["--num_samples"]),
}


@pytest.mark.parametrize("args, fragments", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_is_one_line_on_stderr_and_exit_2(files, args, fragments):
    """Each user mistake ends the run with status 2 and one helpful line on stderr, never a traceback."""
    # "--iterations 2" first keeps the run tiny should the error not fire; a later flag of the same name wins
    result = rnnlab("train", "--iterations", "2", *args, cwd=files)
    assert_one_line_error(result, *fragments)


def test_missing_subcommand_is_one_line_error(tmp_path):
    """`rnnlab` with no command is a usage error: one line, status 2."""
    assert_one_line_error(rnnlab(cwd=tmp_path), "required")


# --- good runs -----------------------------------------------------------------------------------------


GOOD_RUN = ["train", "--dataset", "dinos", "--iterations", "50", "--sample_every", "25", "--hidden_size", "16"]


def test_small_run_prints_samples_and_writes_metrics(tmp_path):
    """A short dinos run exits 0, prints a header, two reports with names, and writes two JSON metric lines."""
    metrics = tmp_path / "metrics.jsonl"
    result = rnnlab(*GOOD_RUN, "--num_samples", "3", "--metrics_file", str(metrics), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "error" not in result.stderr  # notes are fine, errors not
    lines = result.stdout.splitlines()
    assert lines[0].startswith("rnnlab: rnn 1x16, vocabulary 27 on dinos (lines, 16,865 chars)")
    report_lines = [i for i, line in enumerate(lines) if line.startswith("step")]
    assert len(report_lines) == 2
    for i in report_lines:
        names = lines[i + 1:i + 4]  # --num_samples 3 names, indented, under each report
        assert len(names) == 3 and all(name.startswith("    ") for name in names)
        assert all(set(name.strip()) <= set("abcdefghijklmnopqrstuvwxyz") for name in names)
    records = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 2
    assert [r["step"] for r in records] == [25, 50]
    for record in records:
        assert {"step", "train_loss", "smooth_loss", "tokens_per_s"} <= record.keys()
        assert all(isinstance(record[key], (int, float)) for key in ("train_loss", "smooth_loss", "tokens_per_s"))


def test_dash_spellings_are_accepted(tmp_path):
    """--learning-rate, --hidden-size, --sample-every (dashes) set the same options as the underscore names."""
    result = rnnlab("train", "--dataset", "dinos", "--iterations", "10", "--sample-every", "5",
                    "--learning-rate", "0.01", "--hidden-size", "12", "--num-samples", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0]
    assert "1x12" in header and "lr=0.01" in header
    assert sum(line.startswith("step") for line in result.stdout.splitlines()) == 2


def test_dash_spelling_errors_are_one_line_too(tmp_path):
    """A bad value given with the dash spelling is reported like the underscore one."""
    assert_one_line_error(rnnlab("train", "--learning-rate", "0", cwd=tmp_path), "--learning_rate must be > 0")


def test_stream_file_run_succeeds(files):
    """A small prose file trains as a stream corpus with a window that fits."""
    result = rnnlab("train", "--dataset", "short.txt", "--iterations", "4", "--seq_length", "5",
                    "--sample_length", "20", "--hidden_size", "8", cwd=files)
    assert result.returncode == 0, result.stderr
    assert "on short.txt (stream, 27 chars" in result.stdout


def help_entries(help_text: str) -> dict[str, str]:
    """Split ``--help`` output into {first flag: its whole entry on one line}."""
    entries, current = {}, None
    for line in help_text.splitlines():
        if line.startswith("  -"):
            current = line.split()[0].rstrip(",")          # "--flag," when a spelling follows
            entries[current] = line
        elif current and line.startswith("    "):
            entries[current] += " " + line.strip()
        else:
            current = None
    return {flag: " ".join(entry.split()) for flag, entry in entries.items()}


@pytest.fixture(scope="module")
def train_help(tmp_path_factory) -> subprocess.CompletedProcess:
    return rnnlab("train", "--help", cwd=tmp_path_factory.mktemp("help"))


def test_train_help_exits_0_and_mentions_every_flag(train_help):
    """`train --help` exits 0 and lists every training setting under its flag, with its dash spelling."""
    assert train_help.returncode == 0 and train_help.stderr == ""
    entries = help_entries(train_help.stdout)
    for name in SETTINGS:
        assert f"--{name}" in entries, name
        assert f"--{name.replace('_', '-')}" in entries[f"--{name}"]


@pytest.mark.parametrize("name", list(SETTINGS))
def test_train_help_shows_each_default(train_help, name):
    """`train --help` states the default of every option once, so a user sees what a run does without flags:
    its value, "off" for a setting unset by default, or the help's own words for one whose default depends
    on other settings (--learning_rate: the optimizer's own)."""
    entries = help_entries(train_help.stdout)
    if f"--{name}" not in entries:
        pytest.skip(f"no --{name} flag: reported by test_train_help_exits_0_and_mentions_every_flag")
    entry, default = entries[f"--{name}"], default_of(SETTINGS[name][1])
    assert len(re.findall(r"\bdefault\b", entry)) == 1, entry
    if default is not None:
        assert f"(default: {default})" in entry
    elif "(default: off)" not in entry:
        assert "(default: None)" not in entry and re.search(r"\bdefault\b", SETTINGS[name][1].metadata["help"])


def test_every_setting_has_exactly_one_flag_and_every_train_flag_is_a_setting_or_a_command_option(train_help):
    """The parser is built from the settings' fields: one entry per field in --help (with its dash spelling),
    nothing declared twice, and the only other train flags are the command's own options."""
    firsts = [line.split()[0].rstrip(",") for line in train_help.stdout.splitlines() if line.startswith("  --")]
    assert len(firsts) == len(set(firsts))
    assert sorted(firsts) == sorted(f"--{name}" for name in [*SETTINGS, "resume", "new_data", "overwrite", "quiet"])


COMMANDS = ("train", "sample", "export", "translate", "plot", "bench", "visualize")


def help_text(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_help_says_what_the_command_does_with_an_example_and_each_default_once(capsys, command):
    """`rnnlab [COMMAND] --help` speaks to users: a sentence on what it does (not a module docstring), an
    example command on one unwrapped line to copy, and each option's default at most once -- never
    "(default: None)" (an option without a default says what happens instead, or nothing)."""
    text = help_text(capsys, *([command] if command else []))
    description = text.split("\n\n")[1]
    assert description[0].isupper() and "``" not in description and "module" not in description
    examples = text.split("example:\n", 1)[1].splitlines()
    assert examples and examples[0].startswith(f"  rnnlab {command or ''}".rstrip())
    assert all(line.startswith("  rnnlab ") for line in examples if line)       # unwrapped: each a whole command
    for flag, entry in help_entries(text).items():
        assert "(default: None)" not in entry and entry.count("(default:") <= 1, (flag, entry)


def test_only_the_settings_given_reach_the_config():
    """The parser adds no defaults of its own: what a resumed run changes is exactly what the user typed."""
    args = build_parser().parse_args(["train", "--hidden_size", "8", "--learning-rate", "0.01", "--deterministic"])
    assert given_settings(args) == {"hidden_size": 8, "learning_rate": 0.01, "deterministic": True}


TIMING = re.compile(r"[\d,.]+ tok/s|\d+\.\d+s$", re.MULTILINE)


def test_same_seed_same_output(tmp_path):
    """Two runs with the same seed print the same losses and samples and write the same metrics, apart from
    the speed and elapsed-time fields (stripped before comparing)."""
    runs = []
    for i in range(2):
        metrics = tmp_path / f"m{i}.jsonl"
        result = rnnlab(*GOOD_RUN, "--seed", "7", "--metrics_file", str(metrics), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        records = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines()]
        for record in records:
            del record["tokens_per_s"], record["elapsed_s"], record["wall_s"]
        runs.append((TIMING.sub("<time>", result.stdout), records))
    assert runs[0] == runs[1]
    assert "<time>" in runs[0][0]  # the regex did find (and strip) the timing fields


def test_different_seed_different_output(tmp_path):
    """A different seed changes the run (so the reproducibility test above is not vacuous)."""
    a = rnnlab(*GOOD_RUN, "--seed", "1", cwd=tmp_path)
    b = rnnlab(*GOOD_RUN, "--seed", "2", cwd=tmp_path)
    assert TIMING.sub("", a.stdout) != TIMING.sub("", b.stdout)


def test_metrics_file_directory_is_created(tmp_path):
    result = rnnlab("train", "--iterations", "3", "--sample_every", "3", "--metrics_file", "runs/a/m.jsonl",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "runs" / "a" / "m.jsonl").read_text().count("\n") == 1
