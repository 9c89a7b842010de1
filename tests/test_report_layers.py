"""The report stands below the training stack: reading a study and building its page never
imports torch (a report can be built where only the results are, and builds faster)."""

from __future__ import annotations

import subprocess
import sys


def imports_torch(code: str) -> bool:
    probe = f"import sys\n{code}\nprint('torch' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.strip().splitlines()[-1] == "True"


def test_importing_the_report_and_its_command_does_not_import_torch():
    assert not imports_torch("import cnnlab.report, cnnlab.cli.report, cnnlab.studydir")


def test_the_probe_sees_torch_when_the_training_stack_is_imported():
    assert imports_torch("import cnnlab.study")
