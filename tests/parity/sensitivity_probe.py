"""How sensitive is a random tiny DeepseekV4 to weight noise? Loads a BF16 checkpoint (e.g.
make-tiny --format bf16) in FP32, adds Gaussian noise of a given relative L2 to the weights the
`full` recipe quantizes (attention wq_a/wq_b/wkv/wo_a/wo_b, indexer wq_b, shared experts), and
reports logits rel L2, mean KL and top-1 agreement vs the clean model, to put the NVFP4 numbers
of check_export_loader.py in context.  usage: sensitivity_probe.py BF16_DIR [REL_L2 ...]"""
import sys

import torch
from transformers import DeepseekV4ForCausalLM

d = sys.argv[1]
levels = [float(x) for x in sys.argv[2:]] or [0.01, 0.024, 0.05]
torch.manual_seed(0)
model = DeepseekV4ForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
vocab = model.config.vocab_size
g = torch.Generator().manual_seed(1234)
ids = torch.randint(0, vocab, (4, 64), generator=g)
keys = ("q_a_proj", "q_b_proj", "kv_proj", "o_a_proj", "o_b_proj", "wq_a", "wq_b", "wkv", "wo_a", "wo_b",
        "shared_experts")
targets = [(n, p) for n, p in model.named_parameters()
           if p.dim() == 2 and any(k in n for k in keys) and "compressor" not in n and "weights_proj" not in n]
print(f"{len(targets)} weight matrices perturbed, e.g. {[n for n, _ in targets[:4]]}")
with torch.no_grad():
    ref = model(input_ids=ids).logits
    saved = {n: p.detach().clone() for n, p in targets}
    for level in levels:
        for n, p in targets:
            w = saved[n]
            noise = torch.randn(w.shape, generator=g)
            p.copy_(w + noise * (level * w.norm() / noise.norm()))
        out = model(input_ids=ids).logits
        rel = ((out - ref).norm() / ref.norm()).item()
        kl = torch.nn.functional.kl_div(out.log_softmax(-1), ref.log_softmax(-1), log_target=True,
                                        reduction="none").sum(-1).mean().item()
        top1 = (out.argmax(-1) == ref.argmax(-1)).float().mean().item() * 100
        print(f"weight noise rel L2 {level:.3f}: logits rel L2 {rel:.3f}, mean KL {kl:.3f}, top-1 {top1:.1f}%")
        for n, p in targets:
            p.copy_(saved[n])
