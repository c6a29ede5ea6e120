"""Write an HF folder whose encoder keeps the pretrained weights only under KEEP prefixes (fresh ones elsewhere).
Usage: python mix_init.py runs/massbank_small/hf OUT embedding.   (or transformer.)"""
import shutil, sys
import torch
from safetensors.torch import load_file, save_file
from megatron_nexa.convert.from_hf import read_hf
from megatron_nexa.engine.setup import init_distributed
from megatron_nexa.model.encoder import NexaEncoder

src, dst, keep = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
init_distributed(0)
state, mcfg, _ = read_hf(src)
torch.manual_seed(0)
fresh = {"encoder." + k: v for k, v in NexaEncoder(mcfg).state_dict().items()}
shutil.copytree(src, dst, dirs_exist_ok=True)
orig = load_file(f"{src}/model.safetensors")
out, kept = {}, []
for k, v in orig.items():
    if k.startswith("encoder.") and not any(k.startswith("encoder." + p) for p in keep):
        out[k] = fresh[k].to(v.dtype).contiguous()
    else:
        out[k] = v
        kept.append(k)
save_file(out, f"{dst}/model.safetensors", metadata={"format": "pt"})
print("kept pretrained:", [k for k in kept if k.startswith("encoder.")])
