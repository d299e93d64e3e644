"""Helpers shared by the tests of the command line (tests/ is on sys.path under pytest)."""

from predsparse.cli import main


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run `predsparse ARGV...` in-process: returns (exit code, stdout, stderr)."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse errors and --help
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    """The CLI's contract for bad input: exit status 2, one line on stderr, no traceback."""
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
