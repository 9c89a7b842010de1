"""Reading spec files and presets: TOML text to data, with errors at their line."""

from __future__ import annotations

import sys
from pathlib import Path

from cnnlab import presets
from cnnlab.errors import SpecError
from cnnlab.grid import did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib
from cnnlab.spec.places import Source
from cnnlab.spec.vocabulary import TOML_POSITION


def parse_toml(text: str, name: str) -> dict:
    """tomllib.loads with every failure as a SpecError at the line tomllib reports."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SpecError(_toml_error_message(error, text, name)) from None
    except (ValueError, RecursionError, MemoryError) as error:
        raise SpecError(f"{name}: invalid TOML: {str(error) or type(error).__name__}") from None


def _toml_error_message(error: tomllib.TOMLDecodeError, text: str, name: str) -> str:
    message = str(error)
    line, column = None, None
    found = TOML_POSITION.search(message)
    if found:
        message = message[: found.start()].rstrip()
        line, column = int(found.group(1)), int(found.group(2))
    elif message.endswith("(at end of document)"):
        message = message.removesuffix("(at end of document)").rstrip()
        line = text.count("\n") + 1
    where = f"{name}:{line}" if line else name
    after = f" (column {column})" if column else ""
    return f"{where}: invalid TOML: {message}{after}"


def read_file(path: Path) -> tuple[dict, Source]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (Windows editors) too
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a UTF-8 text file") from None
    except (OSError, ValueError) as error:  # ValueError: a NUL byte in the path
        raise SpecError(
            f"{path}: cannot read: {getattr(error, 'strerror', None) or error}"
        ) from None
    return parse_toml(text, str(path)), Source(str(path), text)


def read_ref(ref: str | Path, kind: str) -> tuple[dict, Source, str]:
    """A preset name or a file path -> (TOML data, source, default name)."""
    text = str(ref)
    if text.endswith(".py"):
        raise SpecError(
            f"{text}: a Python file; cnnlab reads {kind}s written in TOML. For Keras code: "
            f"`cnnlab import-keras {text} -o model.toml`"
        )
    if isinstance(ref, Path) or text.endswith(".toml"):
        data, source = read_file(Path(ref))
        return data, source, Path(ref).stem
    found = presets.preset_text(text, kind=kind)
    if found is not None:
        preset_text, shown = found
        return parse_toml(preset_text, shown), Source(shown, preset_text), text
    if Path(text).is_file():
        data, source = read_file(Path(text))
        return data, source, Path(text).stem
    names = presets.list_presets(kind=kind)
    if kind == "study" and presets.preset_text(text, kind="model") is not None:
        raise SpecError(
            f"{text!r} is a model, not a study: train it alone with `cnnlab train {text}`, or "
            f"name it in a study file's models = [...]; study presets: {', '.join(names)}"
        )
    where = (
        "`cnnlab models` lists the model presets"
        if kind == "model"
        else (f"study presets: {', '.join(names)}")
    )
    raise SpecError(
        f"unknown {kind} {text!r}: neither a preset nor a .toml file"
        f"{did_you_mean(text, names)} ({where})"
    )
