"""`cnnlab import-keras`: a thin command over cnnlab.keras_import."""

from __future__ import annotations

from pathlib import Path

from cnnlab import spec
from cnnlab.cli import main
from cnnlab.keras_import import import_keras_file

SNIPPETS = Path(__file__).parent / "keras_snippets"


def test_written_spec_loads_as_the_imported_model(tmp_path, capsys):
    out = tmp_path / "model-10.toml"
    assert main(["import-keras", str(SNIPPETS / "seed_model_10.py"), "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    loaded = spec.load_model(out)
    imported = import_keras_file(SNIPPETS / "seed_model_10.py").spec
    assert loaded == imported
    assert loaded.layers == spec.load_model("seed/model-10").layers


def test_written_spec_is_accepted_by_summary(tmp_path, capsys):
    out = tmp_path / "reference.toml"
    assert main(["import-keras", str(SNIPPETS / "seed_reference.py"), "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["summary", str(out), "--input-shape", "28,28,1", "--classes", "10"]) == 0
    assert "1,199,882" in capsys.readouterr().out  # Keras's count for its mnist_cnn.py


def test_spec_is_printed_with_a_header_saying_which_model(tmp_path, capsys):
    path = tmp_path / "two.py"
    path.write_text("model = Sequential([Dense(4)])\nmodel = Sequential([Flatten(), Dense(2)])\n")
    assert main(["import-keras", str(path), "--index", "1", "--name", "first"]) == 0
    printed = capsys.readouterr().out
    header = " ".join(line[2:] for line in printed.splitlines() if line.startswith("# "))
    assert header.startswith(f"Imported by `cnnlab import-keras` from {path}")
    assert "Sequential model 1 of 2, line 1" in header
    assert 'name = "first"' in printed
    assert spec.parse_toml(printed, "printed")["layers"] == [{"dense": 4}]


def test_errors_are_one_line_and_exit_2(tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.py"
    path.write_text(
        f"model = Sequential()\nmodel.add(Dense(__import__('os').system('touch {marker}')))\n"
    )
    assert main(["import-keras", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {path}:2: Dense argument 'units' must be a written-out value")
    assert "\n" not in err
    assert not marker.exists()
