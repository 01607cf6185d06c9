"""Archives cut short or damaged (an interrupted download) are refused, naming the file, never half read."""

import tarfile

import pytest
import yaml

from hydranet import registry
from hydranet.errors import UserError

from tests.data.datafiles import fake_cifar, make_tar


def load(cfg):
    return registry.get("source", cfg.data.source)(cfg)


def _members_end_at_last_header(archive, out):
    """A plain tar cut exactly before its last member: what tarfile alone reads as a smaller, valid archive."""
    with tarfile.open(archive) as tar:
        last = tar.getmembers()[-1].offset
    out.write_bytes(archive.read_bytes()[:last])
    return out


def _damaged(archive, out, how):
    raw = bytearray(archive.read_bytes())
    if how == "half":
        raw = raw[:len(raw) // 2]
    elif how == "no gzip trailer":
        raw = raw[:-8]  # the CRC and length a gzip stream ends with
    elif how == "bad crc":
        raw[-8] ^= 0xFF
    out.write_bytes(bytes(raw))
    return out


@pytest.fixture
def archives(class_folder, tmp_path):
    """(plain .tar, .tar.gz) of the five-image class folder."""
    plain = tmp_path / "pets.tar"
    with tarfile.open(plain, "w") as tar:
        for path in sorted(class_folder.rglob("*")):
            tar.add(path, arcname=path.relative_to(class_folder).as_posix(), recursive=False)
    return plain, make_tar(class_folder, tmp_path / "pets.tar.gz")


@pytest.mark.parametrize("case", ["tar half", "tar member boundary", "gz half", "gz no gzip trailer", "gz bad crc"])
def test_image_folder_refuses_a_cut_or_damaged_archive(make_cfg, archives, tmp_path, case):
    plain, gz = archives
    assert len(load(make_cfg("image_folder", gz)).images) == 5  # the whole archive reads
    kind, how = case.split(" ", 1)
    if how == "member boundary":
        bad = _members_end_at_last_header(plain, tmp_path / "cut.tar")
    else:
        bad = _damaged(plain if kind == "tar" else gz, tmp_path / ("cut.tar" if kind == "tar" else "cut.tar.gz"), how)
    with pytest.raises(UserError) as err:
        load(make_cfg("image_folder", bad))
    message = str(err.value)
    assert message.startswith(f"{bad}: archive is truncated or corrupt (") and message.endswith("; download it again")
    assert "\n" not in message


def test_cifar10_archive_with_bad_crc_is_refused(make_cfg, tmp_path):
    fake_cifar(tmp_path / "c" / "cifar-10-batches-py")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "c" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    bad = _damaged(archive, tmp_path / "bad.tar.gz", "bad crc")
    with pytest.raises(UserError, match="bad.tar.gz: archive is truncated or corrupt .*CRC"):
        load(make_cfg("cifar10", bad))


def test_cli_train_on_a_cut_archive_is_one_line(cli, archives, tmp_path):
    cut = _members_end_at_last_header(archives[0], tmp_path / "cut.tar")
    exp = tmp_path / "cut.yaml"
    exp.write_text(yaml.safe_dump({"data": {"source": "image_folder", "path": str(cut)},
                                   "tasks": {"label": {"kind": "classification"}}}))
    code, _, err = cli("train", exp, "-q")
    assert code == 2 and err.startswith(f"error: {cut}: archive is truncated or corrupt") and err.count("\n") == 1
