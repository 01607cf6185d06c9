"""DataInfo: attributes instead of string keys, and data.json exactly as runs have always written it."""

import json

from hydranet.config import load_config
from hydranet.data import DataInfo, build_dataset
from hydranet.files import write_json
from hydranet.kinds import TaskInfo

# data.json of an image run as written before DataInfo existed (a quickstart run, tasks shortened)
OLD_IMAGE = ('{"tasks": {"digit": {"kind": "classification", "outputs": 2, "classes": ["0", "1"], "mean": 0.0, '
             '"std": 1.0}}, "kind": "image", "scale": 255.0, "mean": [0.3054516315460205], "std": [0.37584787607192993], '
             '"channels": 1, "size": [8, 8], "input_shape": [1, 8, 8]}')
OLD_TABLE = ('{"tasks": {"diagnosis": {"kind": "binary", "outputs": 1, "classes": ["benign", "malignant"], "mean": 0.0, '
             '"std": 1.0}}, "kind": "table", "encoder": {"version": 1, "columns": []}, "features": ["mean radius"], '
             '"input_shape": [1]}')


def test_old_files_load_and_write_back_byte_for_byte(tmp_path):
    for text in (OLD_IMAGE, OLD_TABLE):
        info = DataInfo.from_dict(json.loads(text))
        write_json(tmp_path / "data.json", info.to_dict(), indent=None)  # as RunDir.write_data_info writes it
        assert (tmp_path / "data.json").read_text().strip() == text
    image = DataInfo.from_dict(json.loads(OLD_IMAGE))
    assert image.is_image and image.input_shape == (1, 8, 8) and image.size == (8, 8)
    assert image.tasks["digit"] == TaskInfo("classification", 2, ["0", "1"])


def test_built_dataset_info_round_trips():
    data = build_dataset(load_config("quickstart", ["data.limit=200"]))
    assert data.info.is_image and data.info.input_shape == tuple(data.x.shape[1:])
    assert DataInfo.from_dict(json.loads(json.dumps(data.info.to_dict()))) == data.info
