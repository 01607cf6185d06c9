"""Texts from a CSV (also .csv.gz) or Parquet table: the columns `data.text.columns` joined into one text per row,
task columns as labels, an optional `split` column; tokenizing happens in `data.build` (on the train split)."""

from __future__ import annotations

from hydranet.config import Config
from hydranet.data.dataset import RawData
from hydranet.data.sources.table import (SPLIT_COLUMN, read_split, read_table, require_column, side_columns,
                                         table_format, table_path)
from hydranet.data.text import joined_texts
from hydranet.errors import UserError
from hydranet.registry import register

EXPECTED = "a CSV or Parquet file with text columns"


@register("source", "text")
def load_text(cfg: Config) -> RawData:
    """One text per row (`data.text.columns` joined by `data.text.separator`) and the task columns as labels."""
    text = cfg.data.text
    path = table_path(cfg, "text", EXPECTED, any_format=True)
    fmt = table_format(path)
    if fmt is None:
        raise UserError(f"{path}: source text reads .csv, .csv.gz or .parquet files ({EXPECTED})")
    frame = read_table(path, fmt, text.header)
    where = str(path)
    texts = {name: require_column(frame, name, where, "data.text.columns").to_numpy(dtype=object)
             for name in text.columns}
    labels = {column: require_column(frame, column, where).to_numpy()
              for column in dict.fromkeys(cfg.column(task) for task in cfg.tasks)}
    split = read_split(frame[SPLIT_COLUMN], where) if SPLIT_COLUMN in frame.columns else None
    columns = {name: require_column(frame, name, where, field).to_numpy() for name, field in side_columns(cfg).items()}
    return RawData(labels=labels, texts=joined_texts(texts, text.columns, text.separator, where),
                   frame=frame[list(text.columns)].reset_index(drop=True), split=split, columns=columns)
