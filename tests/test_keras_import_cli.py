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


def test_output_refuses_to_overwrite_the_input_file(tmp_path, capsys):
    path = tmp_path / "model.py"
    path.write_text("model = Sequential([Flatten(), Dense(10)])\n")
    before = path.read_bytes()
    assert main(["import-keras", str(path), "-o", str(path), "--force"]) == 2
    assert "is the input file itself" in capsys.readouterr().err
    assert path.read_bytes() == before
    link = tmp_path / "alias.toml"
    link.symlink_to(path)
    assert main(["import-keras", str(path), "-o", str(link), "--force"]) == 2
    assert path.read_bytes() == before


def test_output_overwrites_another_existing_file_only_with_force(tmp_path, capsys):
    path = tmp_path / "model.py"
    path.write_text("model = Sequential([Flatten(), Dense(10)])\n")
    out = tmp_path / "mine.toml"
    out.write_text("keep me\n")
    assert main(["import-keras", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {out} already exists; use --force to overwrite it"
    assert out.read_text() == "keep me\n"
    assert main(["import-keras", str(path), "-o", str(out), "--force"]) == 0
    assert spec.load_model(out).layers[-1].units == 10


def test_a_nul_byte_is_reported_with_its_line(tmp_path, capsys):
    path = tmp_path / "nul.py"
    path.write_bytes(b"import keras\nmodel = Sequential([\x00Dense(10)])\n")
    assert main(["import-keras", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {path}:2: not valid Python: a NUL byte (is it a binary file?)"
