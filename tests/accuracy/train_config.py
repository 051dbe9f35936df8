"""Presets of the accuracy fixture (torch-free, so test_fixture_lib.py can check them with
make-tiny here). "model" holds the native config numbers (fixture_lib.native_config), the rest
the corpus, tokenizer and training settings.

real: 6 layers = every kind twice (sliding, CSA ratio 4 + indexer, HCA ratio 128), layers 0-1
hash-routed, 2-5 score-routed (sqrtsoftplus + aux-loss-free bias balancing), 32 routed experts
top-4 + 1 shared, hc_mult 4, no MTP (transformers builds none; quantforge copies MTP unchanged, so
an untrained one would only add bytes). ~39.6 M parameters (~11 M active per token); native
~34 MiB: BF16 embed/head 12 MiB, FP4 experts 15 MiB, the rest FP8/BF16/F32."""

REAL = dict(
    model=dict(
        vocab_size=8192, hidden_size=384, num_hidden_layers=6,
        compress_ratios=[0, 4, 128, 0, 4, 128], num_hash_layers=2, num_nextn_predict_layers=0,
        num_attention_heads=8, head_dim=64, qk_rope_head_dim=16, q_lora_rank=192,
        o_groups=4, o_lora_rank=96, index_n_heads=4, index_head_dim=64, index_topk=64,
        n_routed_experts=32, num_experts_per_tok=4, moe_intermediate_size=128,
        sliding_window=128, hc_mult=4),
    seq_len=512,
    corpus_bytes=80 << 20,      # text read from site-packages (train + held-out)
    tokenizer_bytes=24 << 20,   # the BPE is trained on this much of the training text
    heldout_permille=25,        # ~2.5% of the files are held out
    calib_bytes=3 << 20,        # training documents written to calib.jsonl
    heldout_jsonl_bytes=4 << 20,
    batch=32, lr=2e-3, min_lr_ratio=0.1, warmup_steps=60, weight_decay=0.1,
    betas=(0.9, 0.95), grad_clip=1.0, bias_update=1e-3,
    eval_windows=64, minutes=5.0, post_reserve_s=60.0, max_shard_bytes=14 << 20,
)

SMOKE = dict(
    model=dict(
        vocab_size=1024, hidden_size=128, num_hidden_layers=3,
        compress_ratios=[0, 4, 128], num_hash_layers=1, num_nextn_predict_layers=0,
        num_attention_heads=4, head_dim=32, qk_rope_head_dim=16, q_lora_rank=64,
        o_groups=2, o_lora_rank=32, index_n_heads=2, index_head_dim=32, index_topk=16,
        n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=64,
        sliding_window=64, hc_mult=4),
    seq_len=256,
    corpus_bytes=3 << 20, tokenizer_bytes=2 << 20, heldout_permille=50,
    calib_bytes=256 << 10, heldout_jsonl_bytes=256 << 10,
    batch=8, lr=3e-3, min_lr_ratio=0.1, warmup_steps=5, weight_decay=0.1,
    betas=(0.9, 0.95), grad_clip=1.0, bias_update=1e-3,
    eval_windows=8, minutes=1.0, post_reserve_s=12.0, max_shard_bytes=1 << 20, smoke_steps=40,
)

PRESETS = {"real": REAL, "smoke": SMOKE}
