"""Probe of the GPU machine's transformers DeepseekV4: dumps the config defaults, the exact
tensor list that save_pretrained writes for a small random model (the native layout), and
the environment. Usage: python3 probe_transformers_v4.py OUT_DIR"""
import json
import os
import sys
import tarfile

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
import torch
import transformers
from transformers import DeepseekV4Config, DeepseekV4ForCausalLM

pkg = os.path.dirname(transformers.models.deepseek_v4.__file__)
with tarfile.open(os.path.join(out, "deepseek_v4_src.tar.gz"), "w:gz") as tar:
    tar.add(pkg, arcname="deepseek_v4")
    conv = os.path.join(os.path.dirname(transformers.__file__), "conversion_mapping.py")
    if os.path.exists(conv):
        tar.add(conv, arcname="conversion_mapping.py")

default = DeepseekV4Config()
info = {"transformers": transformers.__version__, "torch": torch.__version__,
        "default_config": default.to_dict()}
wanted = dict(
    vocab_size=512, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
    head_dim=64, q_lora_rank=128, moe_intermediate_size=128, n_routed_experts=8,
    num_experts_per_tok=2, num_nextn_predict_layers=1)
known = default.to_dict()
small = DeepseekV4Config(**{k: v for k, v in wanted.items() if k in known})
info["small_config"] = small.to_dict()
torch.manual_seed(0)
model = DeepseekV4ForCausalLM(small)
save_dir = os.path.join(out, "saved")
model.save_pretrained(save_dir)
from safetensors import safe_open
tensors = {}
for f in sorted(os.listdir(save_dir)):
    if f.endswith(".safetensors"):
        with safe_open(os.path.join(save_dir, f), "pt") as sf:
            for k in sf.keys():
                t = sf.get_slice(k)
                tensors[k] = {"dtype": t.get_dtype(), "shape": t.get_shape()}
info["saved_tensors"] = tensors
info["state_dict"] = {k: [str(v.dtype), list(v.shape)] for k, v in model.state_dict().items()}
info["saved_config"] = json.load(open(os.path.join(save_dir, "config.json")))
with open(os.path.join(out, "probe.json"), "w") as f:
    json.dump(info, f, indent=1)
print("tensors saved:", len(tensors))
