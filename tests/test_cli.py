from __future__ import annotations

import subprocess
import sys

import pytest

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


def test_import_cnnlab_is_light_and_loads_torch_only_when_asked():
    code = (
        "import sys, cnnlab; assert 'torch' not in sys.modules, 'torch imported';"
        "cnnlab.train_model; assert 'torch' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_help_and_version_load_neither_torch_nor_matplotlib():
    # They answered in 3 s when every command's library came with the CLI; now in 0.2 s.
    code = (
        "import sys; from cnnlab.cli import main;"
        "assert main(['--version']) == 0 and main(['run', '--help']) == 0;"
        "heavy = {'torch', 'matplotlib', 'scipy'} & set(sys.modules); assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_every_public_name_of_the_library_resolves():
    for name in cnnlab.__all__:
        assert getattr(cnnlab, name) is not None, name
    assert cnnlab.load_model("seed/model-2").name


def test_an_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'trian_model'"):
        cnnlab.trian_model  # noqa: B018
