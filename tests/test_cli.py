from __future__ import annotations

import subprocess
import sys

import cnnlab
from cnnlab.cli import main


def test_version_prints_package_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"cnnlab {cnnlab.__version__}"


def test_console_script_help_lists_commands():
    done = subprocess.run(
        [sys.executable, "-m", "cnnlab", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout


def test_a_user_error_is_one_line_and_exit_code_2(capsys):
    assert main(["summary", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "Traceback" not in err
