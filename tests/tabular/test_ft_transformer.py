"""The ft_transformer trunk: one token per column (numbers x·w + b, categories their vector + b), [CLS] output; the
columns are a set, so the output does not depend on the order they are given in when their identities (each
column's own weights) are the same."""

import pytest
import torch

from hydranet.errors import UserError
from hydranet.models.ft_transformer import FTTransformer, FTTransformerOptions

OPTIONS = FTTransformerOptions(width=16, depth=2, heads=4)
CARDINALITIES = (0, 3, 0, 4, 0)  # numbers at 0, 2, 4; category codes at 1 (3 codes) and 3 (4 codes)
ORDER = [3, 0, 4, 1, 2]  # the columns given in another order: position i holds column ORDER[i]


def rows(n: int = 6) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, len(CARDINALITIES), generator=gen)
    for i, size in enumerate(CARDINALITIES):
        if size:
            x[:, i] = torch.randint(0, size, (n,), generator=gen).float()
    return x


def column_parameters(trunk: FTTransformer, columns: list[int]) -> dict[int, dict[str, torch.Tensor]]:
    """Each column's own parameters by its identity (`columns[i]`: the column at input position i)."""
    tokenizer, embedding = trunk.tokenizer, trunk.tokenizer.categories
    out = {}
    for token, position in enumerate([*embedding.numeric.tolist(), *embedding.coded.tolist()]):
        own = {"bias": tokenizer.bias[token]}
        if token < len(embedding.numeric):
            own["weight"] = tokenizer.weight[token]
        else:
            code = token - len(embedding.numeric)
            start, size = embedding.offsets[code], trunk.tokenizer.cardinalities[position]
            own["vectors"] = embedding.vectors[start:start + size]
        out[columns[position]] = own
    return out


def given_in_order(trunk: FTTransformer, order: list[int]) -> FTTransformer:
    """The same columns (each with its own weights), given in `order`."""
    other = FTTransformer(OPTIONS, (len(order),), tuple(CARDINALITIES[c] for c in order))
    shared = {k: v for k, v in trunk.state_dict().items() if not k.startswith("tokenizer.")}
    other.load_state_dict(shared, strict=False)
    mine, theirs = column_parameters(trunk, list(range(len(order)))), column_parameters(other, order)
    with torch.no_grad():
        for column, params in theirs.items():
            for name, tensor in params.items():
                tensor.copy_(mine[column][name])
    return other


def test_output_does_not_depend_on_the_order_of_the_columns():
    torch.manual_seed(0)
    trunk = FTTransformer(OPTIONS, (len(CARDINALITIES),), CARDINALITIES).eval()
    x = rows()
    reordered = given_in_order(trunk, ORDER).eval()
    with torch.no_grad():
        assert torch.allclose(reordered(x[:, ORDER]), trunk(x), atol=1e-5)
        assert not torch.allclose(trunk(x[:, ORDER][:, [1, 0, 2, 3, 4]]), trunk(x), atol=1e-3)  # identities matter


def test_tokens_are_x_times_w_plus_b_and_code_vectors():
    torch.manual_seed(0)
    trunk = FTTransformer(OPTIONS, (len(CARDINALITIES),), CARDINALITIES)
    x = rows(2)
    tokens = trunk.tokenizer(x)  # numbers' tokens first (columns 0, 2, 4), then the codes' (columns 1, 3)
    assert tokens.shape == (2, 5, 16) and trunk(x).shape == (2, 16)
    tokenizer = trunk.tokenizer
    assert torch.allclose(tokens[:, 1], x[:, 2:3] * tokenizer.weight[1] + tokenizer.bias[1])
    code = x[:, 3].long()
    assert torch.allclose(tokens[:, 4], tokenizer.categories.vectors[3 + code] + tokenizer.bias[4])


def test_width_not_a_multiple_of_heads_is_one_line():
    with pytest.raises(UserError, match=r"^model.trunk.width: 10 is not a multiple of model.trunk.heads 4$"):
        FTTransformer(FTTransformerOptions(width=10, heads=4), (3,))
