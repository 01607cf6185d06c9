"""hydranet.files: atomic writes, and no other module writing files by itself."""

import errno
import os
import re
from pathlib import Path

import matplotlib
import pandas as pd
import pytest
import torch

from hydranet.errors import UserError
from hydranet.files import atomic_folder, atomic_path, make_dir, read_tensors, write_csv, write_figure, write_json, write_tensors, write_text

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src" / "hydranet"
# A file written by anything but hydranet/files.py could be left half-written by a crash.
DIRECT_WRITES = re.compile(r"\.write_text\(|\.write_bytes\(|json\.dump\(|\.savefig\(|\.to_csv\(|\.to_parquet\(|"
                           r"\.write_html\(|\.write_image\(|save_file\(|torch\.save\(|np\.save|"
                           r"open\([^)]*['\"][wax]b?\+?['\"]")
ALLOWED = {"files.py"}  # the one home of writing; TensorBoard's event files are its own business


def test_every_writer_goes_through_files_py():
    offenders = [f"{path.relative_to(SRC)}:{n}: {line.strip()}"
                 for path in sorted(SRC.rglob("*.py")) if path.name not in ALLOWED
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if DIRECT_WRITES.search(line) and not line.lstrip().startswith("#")]
    assert not offenders, "write through hydranet.files instead:\n" + "\n".join(offenders)


def test_each_kind_of_file_is_written_and_no_temp_file_is_left(tmp_path):
    write_text(tmp_path / "a" / "note.md", "Δm ± 1\n")  # missing folders are created
    write_json(tmp_path / "r.json", {"x": [1, 2]})
    write_csv(tmp_path / "t.csv", pd.DataFrame({"a": [1, 2]}))
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    write_figure(tmp_path / "p.png", fig)
    plt.close(fig)
    write_tensors(tmp_path / "w.safetensors", {"w": torch.arange(3.0)}, {"note": "hi"})
    assert (tmp_path / "a" / "note.md").read_text(encoding="utf-8") == "Δm ± 1\n"
    assert (tmp_path / "r.json").read_text() == '{\n  "x": [\n    1,\n    2\n  ]\n}'
    assert list(pd.read_csv(tmp_path / "t.csv")["a"]) == [1, 2]
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    tensors, meta = read_tensors(tmp_path / "w.safetensors")
    assert torch.equal(tensors["w"], torch.arange(3.0)) and meta == {"note": "hi"}
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o644  # shareable, not mkstemp's 0600
    assert sorted(p.name for p in tmp_path.rglob(".*")) == []


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "summary.json"
    write_json(target, {"old": True})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"new": tru')  # half written when the crash comes
            raise RuntimeError("crash")
    assert target.read_text() == '{\n  "old": true\n}' and list(tmp_path.iterdir()) == [target]


def test_a_full_disk_mid_write_is_one_line_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "summary.json"
    write_json(target, {"old": True})
    with pytest.raises(UserError, match=f"^{re.escape(str(target))}: cannot write here \\(No space left on device\\); free some"):
        with atomic_path(target) as tmp:
            tmp.write_text('{"new": tru')  # half written when the disk fills up
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert target.read_text() == '{\n  "old": true\n}' and list(tmp_path.iterdir()) == [target]
    with pytest.raises(PermissionError):  # any other failure of the writer keeps its traceback
        with atomic_path(target):
            raise PermissionError(errno.EACCES, "denied")


def test_reading_a_bad_weights_file_names_it(tmp_path):
    with pytest.raises(UserError, match="missing.safetensors: file not found"):
        read_tensors(tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="bad.safetensors: not a readable safetensors file"):
        read_tensors(tmp_path / "bad.safetensors")


def test_an_unwritable_place_is_one_line_naming_it_and_keeps_what_was_there(tmp_path):
    old = tmp_path / "old.csv"
    write_text(old, "kept\n")
    a_folder = tmp_path / "folder.csv"
    a_folder.mkdir()
    for target in (old / "out.csv", Path("/proc/hydranet-test/out.csv"), a_folder):
        with pytest.raises(UserError, match=f"^{re.escape(str(target))}: cannot write here \\(.+\\); expected a writable file path$"):
            write_csv(target, pd.DataFrame({"a": [1]}))
    with pytest.raises(UserError, match=f"^{re.escape(str(old / 'runs'))}: cannot write here .*expected a folder"):
        make_dir(old / "runs")
    assert old.read_text() == "kept\n" and a_folder.is_dir() and not list(a_folder.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.csv", "old.csv"]  # no temporary file left


def test_a_folder_is_replaced_whole_or_left_as_it_was(tmp_path):
    target = tmp_path / "export"
    with atomic_folder(target) as staging:
        write_text(staging / "a.txt", "first")
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as staging:
            write_text(staging / "a.txt", "second")
            raise RuntimeError("failed half-way")
    assert [p.name for p in target.iterdir()] == ["a.txt"] and (target / "a.txt").read_text() == "first"
    with atomic_folder(target) as staging:
        write_text(staging / "b.txt", "new")
    assert [p.name for p in target.iterdir()] == ["b.txt"]  # replaced as a whole, not merged
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no staging or old folder left
