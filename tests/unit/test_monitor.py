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


def test_console_line_leaves_out_terms_the_run_does_not_train():
    from megatron_nexa.engine.trainer import console_line

    nan = float("nan")
    m = {"loss": 7.5, "masked_mz": 5.0, "masked_mz_acc": 0.03, "masked_intensity": 1.9, "retention_order": 0.69,
         "retention_order_acc": 0.5, "contrastive": nan, "contrastive_acc": nan, "lr": 4e-4, "grad_norm": 2.0,
         "tokens_per_s": 2700.0, "mfu": None}
    line = console_line(600, 1000, m, 120.0)
    assert "nce" not in line and "nan" not in line
    assert line.startswith("step 600/1000 loss 7.5000 mz 5.000 (acc 0.030) int 1.900 ro 0.690 (acc 0.500) lr 4.00e-04")
    assert line.endswith("2,700 tok/s eta 2.0 min")
    line = console_line(600, 1000, m | {"contrastive": 0.1, "contrastive_acc": 0.99, "mfu": 0.4}, 120.0)
    assert "nce 0.100 (acc 0.990)" in line and "mfu 40.0%" in line
