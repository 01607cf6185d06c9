"""`InputMap`: a student's prepared inputs, re-expressed as a run prepared on other data (a distillation teacher)
prepares them, checked against that run's own preparation of the same raw examples."""

import numpy as np
import pandas as pd
import pytest
import torch

from hydranet.data.dataset import ImageNormalizer
from hydranet.data.info import DataInfo
from hydranet.data.input_map import input_map
from hydranet.data.tabular import TableEncoder
from hydranet.errors import UserError


def image_info(mean, std, scale=255.0, shape=(2, 4, 4)):
    return DataInfo(kind="image", input_shape=shape, scale=scale, mean=mean, std=std, channels=shape[0], size=shape[1:])


def table_info(frame):
    encoder = TableEncoder().fit(frame)
    return DataInfo(kind="table", input_shape=(len(encoder.feature_names),), encoder=encoder.state_dict(),
                    features=list(frame.columns)), encoder


def test_images_normalized_with_other_statistics_read_as_the_teacher_reads_them():
    raw = torch.randint(0, 256, (3, 2, 4, 4), dtype=torch.uint8)
    student, teacher = image_info([0.4, 0.5], [0.2, 0.3]), image_info([0.6, 0.1], [0.25, 0.5], scale=1.0)
    mapped = input_map(student, teacher, "teacher")(ImageNormalizer(student)(raw))
    assert torch.allclose(mapped, ImageNormalizer(teacher)(raw), atol=1e-4)
    assert input_map(student, image_info([0.4, 0.5], [0.2, 0.3]), "teacher") is None  # prepared alike: nothing to do


def test_tables_encoded_on_other_rows_read_as_the_teacher_reads_them():
    rows = pd.DataFrame({"age": [20.0, 35.0, 50.0, 41.0], "job": ["a", "b", "c", "a"], "city": ["x", "y", "x", "y"]})
    student, student_encoder = table_info(rows.iloc[:3])  # fitted on other rows than the teacher: other mean and std
    teacher_rows = rows.iloc[1:][["job", "age"]].assign(job=["b", "c", "d"])  # columns in another order, no city,
    teacher, teacher_encoder = table_info(teacher_rows)  # a job the student never saw (d), one it did not (a)
    mapped = input_map(student, teacher, "teacher")(torch.from_numpy(student_encoder.transform(rows)))
    assert torch.allclose(mapped, torch.from_numpy(teacher_encoder.transform(rows)), atol=1e-5)


@pytest.mark.parametrize("teacher, message", [
    (image_info([0.5], [0.2], shape=(1, 4, 4)), "teacher: takes inputs of shape (1, 4, 4), the student's are (2, 4, 4)"),
    (DataInfo(kind="table", input_shape=(3,)), "teacher: takes table inputs, the student's are image inputs"),
])
def test_images_of_another_shape_or_a_table_are_refused(teacher, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        input_map(image_info([0.4, 0.5], [0.2, 0.3]), teacher, "teacher")


def test_a_feature_the_student_lacks_or_reads_otherwise_is_refused():
    student, _ = table_info(pd.DataFrame({"age": [1.0, 2.0], "job": ["a", "b"]}))
    cases = ((pd.DataFrame({"height": [1.0, 2.0]}), "reads feature 'height' as numeric; the student's data lacks it"),
             (pd.DataFrame({"age": ["old", "young"]}),
              "reads feature 'age' as categorical; the student's data has it as numeric"))
    for frame, message in cases:
        with pytest.raises(UserError, match=message):
            input_map(student, table_info(frame)[0], "teacher")
