"""The report section of text runs: a few test texts as read, with every task's prediction and label, so a reader
sees what the model is given and what it makes of it (a row number or token ids say nothing about a text).
"""

from __future__ import annotations

from hydranet.data.info import TEXT
from hydranet.explain.run import drawn
from hydranet.report.context import RunContext, section
from hydranet.report.page import escape, table
from hydranet.report.split_sections import predicted_and_label, shortened

TEXT_EXAMPLES = 8  # test texts shown: drawn as `hydranet explain --split test` draws them
TEXT_WIDTH = 400  # characters of each text shown (AG News' articles are about 240)


@section("texts", "Test texts", order=85)
def test_texts(ctx: RunContext) -> str | None:
    """A few test texts (joined from the text columns as in training) with each task's prediction and label;
    the same texts `hydranet explain RUN --split test --n 8` explains, so the Attributions section reads beside it."""
    if ctx.input_kind != TEXT:
        return None
    test, texts = ctx.test, ctx.test_texts
    pick = drawn(ctx.loaded, min(TEXT_EXAMPLES, len(texts)), len(texts))
    answers = {task: predicted_and_label(test, task, pick) for task in test.tasks if not test.tasks[task].dense}
    header = ["row", "text", *(f"{task} {side}" for task in answers for side in ("predicted", "label"))]
    rows = [(int(ctx.dataset.index["test"][r]), shortened(texts[r], TEXT_WIDTH),
             *(part for task in answers for part in answers[task][k])) for k, r in enumerate(pick.tolist())]
    cut = ctx.dataset.info.max_length
    return (f"<p>{len(pick)} of the {len(texts)} test texts, drawn as <code>hydranet explain RUN --split test --n "
            f"{len(pick)}</code> draws them; the model reads the first {escape(cut)} tokens of each ([CLS] "
            f"included). Probabilities are the predicted class's.</p>" + table(header, rows))
