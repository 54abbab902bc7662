"""The fit of a slice into the model input (stretch or longest-side-pad), as the server does it
(the same cases as test/unit/pipeline.test.ts; pixel parity with the server: test/integration/fit-parity.test.ts)."""
import numpy as np
import pytest

from ldfsam_models.evaluate import to_input, to_native
from ldfsam_models.inputs import fitted_size


@pytest.mark.parametrize("rows,columns,size,expected", [(540, 800, 256, (173, 256)), (800, 540, 256, (256, 173)), (3, 2, 5, (5, 3)), (4, 3, 6, (6, 5))])
def test_longest_side_pad_rounds_the_short_side_half_up(rows, columns, size, expected):
    assert fitted_size(rows, columns, size, "longest-side-pad") == expected
    assert fitted_size(rows, columns, size, "stretch") == (size, size)


def test_unknown_fit_is_refused():
    with pytest.raises(ValueError, match="unknown fit"):
        fitted_size(2, 2, 4, "crop")


def test_the_padding_is_zero_and_the_logits_are_cropped_before_resizing_back():
    image = np.full((2, 4, 3), 0.5, np.float32)
    x = to_input(image, 8, "longest-side-pad")
    assert x.shape == (3, 8, 8) and np.all(x[:, :4] == 0.5) and np.all(x[:, 4:] == 0)
    logits = -np.ones((1, 8, 8), np.float32)
    logits[0, :4, :4] = 1  # left half of the fitted rows
    logits[0, 5:, 2] = 5  # in the padding: must not reach the mask
    mask = to_native(logits, (2, 4), "longest-side-pad") > 0
    assert mask.tolist() == [[True, True, False, False], [True, True, False, False]]
