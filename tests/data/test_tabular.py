"""TableEncoder: train-only statistics checked by hand, one-hot categories, missing values, JSON state.

Expected numbers are computed by hand in the comments, not by the code under test.
"""

import json
import math

import numpy as np
import pandas as pd
import pytest

from hydranet.data.tabular import TableEncoder
from hydranet.errors import UserError


@pytest.fixture
def train():
    return pd.DataFrame({"age": [1.0, 2.0, 3.0, np.nan], "color": ["red", " blue", "red", "?"], "const": [5, 5, 5, 5]})


def test_numeric_standardized_with_train_statistics(train):
    encoder = TableEncoder().fit(train)
    test = pd.DataFrame({"age": [4.0, np.nan, 2.0], "color": ["red"] * 3, "const": [5, 6, 5]})
    x = encoder.transform(test)
    # train ages 1, 2, 3: mean 2, population std sqrt(2/3) = 0.8165 → age 4 is 2 / 0.8165 = 2.449
    std = math.sqrt(2 / 3)
    assert x[:, 0] == pytest.approx([2 / std, 0.0, 0.0], abs=1e-6)  # missing → 0, i.e. the train mean
    # constant train column: std 0 is replaced by 1, so values stay finite (6 → 1)
    assert x[:, -1].tolist() == [0.0, 1.0, 0.0]


def test_statistics_come_from_the_train_frame_only(train):
    everything = pd.concat([train, pd.DataFrame({"age": [100.0], "color": ["green"], "const": [5]})])
    encoder = TableEncoder().fit(train)
    assert encoder.columns[0]["mean"] == pytest.approx(2.0)
    assert "color=green" not in encoder.feature_names
    assert np.isfinite(encoder.transform(everything)).all()


def test_categorical_one_hot_over_train_categories(train):
    encoder = TableEncoder().fit(train)
    assert encoder.feature_names == ["age", "color=blue", "color=red", "const"]
    x = encoder.transform(pd.DataFrame({"age": [2.0] * 4, "color": ["blue", "red ", "green", None], "const": [5] * 4}))
    assert x[:, 1:3].tolist() == [[1, 0], [0, 1], [0, 0], [0, 0]]  # unseen 'green' and missing → all zeros
    assert x.dtype == np.float32 and x.shape == (4, 4)


def test_numbers_written_as_text_are_numeric():
    frame = pd.DataFrame({"n": [" 1", "3 ", "?", ""]})
    encoder = TableEncoder().fit(frame)
    assert encoder.columns[0]["kind"] == "numeric" and encoder.columns[0]["mean"] == pytest.approx(2.0)
    assert encoder.transform(frame)[:, 0].tolist() == [-1.0, 1.0, 0.0, 0.0]


def test_state_round_trips_through_json(train):
    encoder = TableEncoder().fit(train)
    restored = TableEncoder.from_state(json.loads(json.dumps(encoder.state_dict())))
    assert restored.feature_names == encoder.feature_names
    np.testing.assert_array_equal(restored.transform(train), encoder.transform(train))


def test_missing_column_names_it(train):
    encoder = TableEncoder().fit(train)
    with pytest.raises(UserError, match="no column 'color'"):
        encoder.transform(train.drop(columns="color"))


def test_text_in_a_numeric_column_is_an_error(train):
    encoder = TableEncoder().fit(train)
    with pytest.raises(UserError, match="'age'.*'old'"):
        encoder.transform(train.assign(age=["old", 1, 2, 3]))


def test_index_of_a_train_subset_does_not_matter(train):
    subset = train.iloc[[2, 0, 1]]  # non-default index, as build.py passes frame.iloc[train]
    x = TableEncoder().fit(subset).transform(subset)
    assert x[:, 0] == pytest.approx([1.2247449, -1.2247449, 0.0], abs=1e-6)
