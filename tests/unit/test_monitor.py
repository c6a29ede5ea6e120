import json

import numpy as np
import torch

from megatron_nexa.engine.monitor import _json_value


def test_json_values_are_numbers_or_null():
    assert _json_value(torch.tensor(2.5, dtype=torch.float64)) == 2.5  # DeepSpeed's grad norm is a 0-d tensor
    assert _json_value(np.float32(1.5)) == 1.5
    assert _json_value(float("nan")) is None and _json_value(torch.tensor(float("inf"))) is None
    assert _json_value("step_00000004") == "step_00000004"
    json.dumps([_json_value(v) for v in (torch.tensor(1), np.int64(3), 7)])
