"""`hydranet meta adapt RUN SUPPORT QUERY`: adapt a meta-trained run to a user's own few labelled examples and
predict new inputs, as one episode: the method adapts as it does in `meta eval` (ProtoNet prototypes, MAML/ANIL
inner steps, the fine-tuning baseline's ridge head), and each query gets a class and a probability per class.

SUPPORT is a folder with one sub-folder of images per class (or, for a table source, a CSV/Parquet file with the
class column); QUERY is image files or folders (or a table). The files become model inputs exactly as training
made them: Omniglot drawings by Omniglot's decoding, a data source's by the preprocessing stored in data.json.
A sinusoid run regresses instead: SUPPORT is a table of the K points of the user's curve (columns `x`, `y`), QUERY
a table of the points to predict (column `x`), and each gets its adapted `prediction`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hydranet.config import Config
from hydranet.data import DataInfo
from hydranet.data.dataset import missing_mask
from hydranet.data.images import image_files, read_image_file
from hydranet.errors import UserError
from hydranet.files import write_csv
from hydranet.meta import omniglot
from hydranet.meta.classes import class_column
from hydranet.meta.episodes import Episodes
from hydranet.meta.learner import Params, Problem
from hydranet.meta.setup import learner
from hydranet.predict import encoded_image_inputs, input_images, read_input_table, table_inputs
from hydranet.rundir import RunDir, check_fits


class Inputs:
    """Turns a user's files into the run's model inputs: image files, or a table for a table source."""

    def __init__(self, run: RunDir, cfg: Config):
        self.cfg = cfg
        self.info = run.read_data_info(DataInfo.from_dict) if cfg.meta.source == "data" else None

    @property
    def table(self) -> bool:
        return self.info is not None and not self.info.is_image

    @property
    def shape(self) -> tuple[int, ...]:
        size = self.cfg.meta.image_size
        return tuple(self.info.input_shape) if self.info is not None else (1, size, size)

    def images(self, files: list[Path], where: str) -> torch.Tensor:
        if self.info is not None:
            return encoded_image_inputs(self.info, [(str(f), read_image_file(f)) for f in files], where)
        return torch.stack([omniglot.decode_drawing(read_image_file(f), str(f), self.cfg.meta.image_size) for f in files])

    def rows(self, frame: pd.DataFrame, where: str) -> torch.Tensor:
        return table_inputs(self.info, frame, where)


def read_support(inputs: Inputs, path: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(x (S, *shape), labels (S,) in 0..N-1, the N class names) of the support set; at least 2 classes."""
    if inputs.table:
        x, names = _support_table(inputs, path)
    else:
        x, names = _support_folders(inputs, path)
    classes = sorted(set(names))
    if len(classes) < 2:
        raise UserError(f"{path}: support examples of {len(classes)} class ({', '.join(classes) or 'none'}); "
                        f"expected at least 2 classes to tell apart")
    labels = torch.tensor([classes.index(n) for n in names])
    return x, labels, classes


def _support_folders(inputs: Inputs, path: Path) -> tuple[torch.Tensor, list[str]]:
    if not path.is_dir():
        raise UserError(f"{path}: not a folder (SUPPORT: expected one sub-folder of images per class)")
    parts, names = [], []
    for folder in sorted(p for p in path.iterdir() if p.is_dir()):
        files = image_files(folder)
        if not files:
            raise UserError(f"{folder}: no image files (SUPPORT: each class folder needs at least one example)")
        parts.append(inputs.images(files, str(folder)))
        names += [folder.name] * len(files)
    if not parts:
        raise UserError(f"{path}: no class sub-folders (SUPPORT: expected one sub-folder of images per class)")
    return torch.cat(parts), names


def _support_table(inputs: Inputs, path: Path) -> tuple[torch.Tensor, list[str]]:
    column = class_column(inputs.cfg)
    frame = read_input_table(path)
    if column not in frame.columns:
        raise UserError(f"{path}: no column {column!r} (SUPPORT: a table of examples with their class in {column!r})")
    labels = frame[column].to_numpy(dtype=object)
    unlabelled = missing_mask(labels)
    if unlabelled.any():
        raise UserError(f"{path}: row {int(np.flatnonzero(unlabelled)[0]) + 1} has no {column!r} (every support "
                        f"example needs its class)")
    return inputs.rows(frame, str(path)), [str(v) for v in labels]


def read_query(inputs: Inputs, paths: list[Path]) -> tuple[torch.Tensor, list[str]]:
    """(x (Q, *shape), an id per input: its file, or its row number in a table)."""
    if inputs.table:
        if len(paths) != 1:
            raise UserError(f"QUERY: this run was meta-trained on a table; give one table file, not {len(paths)}")
        frame = read_input_table(paths[0])
        return inputs.rows(frame, str(paths[0])), [str(i) for i in range(len(frame))]
    files = input_images(paths)
    return inputs.images(files, "QUERY"), [str(f) for f in files]


def adapt_run(run_dir: str | Path, support: Path, query: list[Path], output: Path | None = None) -> pd.DataFrame:
    """Predictions for the query inputs after adapting to the support set: `input`, `prediction` and `p_<class>`
    (softmax of the adapted scores) per class, or `input`, `x`, `prediction` for a sinusoid run; written to
    `output` as CSV when given."""
    run = RunDir.open(run_dir)
    cfg = run.read_config()
    run.require(run.model)
    tensors, _ = run.read_weights(run.model)
    adapt = _adapt_curve if cfg.meta.source == "sinusoid" else _adapt_classes
    frame = adapt(run, cfg, tensors, Path(support), [Path(p) for p in query])
    if output is not None:
        write_csv(output, frame)
    return frame


def _adapt_classes(run: RunDir, cfg: Config, tensors: Params, support: Path, query: list[Path]) -> pd.DataFrame:
    inputs = Inputs(run, cfg)
    head = tensors.get("head.weight")
    net, method = learner(cfg, Problem(regression=False), inputs.shape, None if head is None else head.shape[0])
    check_fits({**dict(net.named_parameters()), **method.extra_parameters(net)}, tensors, run.model)
    support_x, support_y, classes = read_support(inputs, support)
    if method.head == "ways" and len(classes) != cfg.meta.ways:
        raise UserError(f"{support}: {len(classes)} class folders; {cfg.meta.method.name} was meta-trained with one "
                        f"head output per class of {cfg.meta.ways}-way episodes, so it adapts to {cfg.meta.ways} classes")
    query_x, ids = read_query(inputs, query)
    probabilities = torch.softmax(predict(method, tensors, support_x, support_y, query_x, len(classes)), -1)
    frame = pd.DataFrame({"input": ids, "prediction": [classes[i] for i in probabilities.argmax(-1).tolist()]})
    for k, name in enumerate(classes):
        frame[f"p_{name}"] = probabilities[:, k].numpy()
    return frame


def _adapt_curve(run: RunDir, cfg: Config, tensors: Params, support: Path, query: list[Path]) -> pd.DataFrame:
    """A sinusoid run adapted to the user's own points of one curve, as `meta eval` adapts to a new task."""
    net, method = learner(cfg, Problem(regression=True), (1,), None)
    check_fits({**dict(net.named_parameters()), **method.extra_parameters(net)}, tensors, run.model)
    points = _numbers(read_input_table(support), ("x", "y"), support, "SUPPORT")
    if len(query) != 1:
        raise UserError(f"QUERY: a sinusoid run predicts the points of one table (column 'x'); got {len(query)} paths")
    x = _numbers(read_input_table(query[0]), ("x",), query[0], "QUERY")[:, :1]
    y = predict(method, tensors, points[:, :1], points[:, 1:], x, ways=0)[:, 0]
    return pd.DataFrame({"input": [str(i) for i in range(len(x))], "x": x[:, 0].numpy(), "prediction": y.numpy()})


def _numbers(frame: pd.DataFrame, columns: tuple[str, ...], path: Path, role: str) -> torch.Tensor:
    """(rows, len(columns)) float tensor of the named columns; each must exist, hold numbers and have no gaps."""
    for column in columns:
        if column not in frame.columns:
            raise UserError(f"{path}: no column {column!r} ({role}: a table with columns {', '.join(columns)})")
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            value = frame[column].iloc[row]
            raise UserError(f"{path}: row {row + 1} of column {column!r} is "
                            f"{'empty' if pd.isna(value) else repr(value)}; expected a number")
    if frame.empty:
        raise UserError(f"{path}: no rows ({role}: expected at least one point)")
    return torch.tensor(frame[list(columns)].to_numpy(dtype=np.float32))


def predict(method: object, params: Params, support_x: torch.Tensor, support_y: torch.Tensor,
            query_x: torch.Tensor, ways: int) -> torch.Tensor:
    """(Q, ways) adapted scores: the support and query sets as the one episode of a meta-batch of one."""
    episode = Episodes(support_x[None], support_y[None], query_x[None],
                       torch.zeros(1, len(query_x), dtype=torch.long), torch.arange(ways)[None])
    with torch.no_grad():
        return method.predict(params, episode)[0]
