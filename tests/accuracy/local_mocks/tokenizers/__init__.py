"""Local stand-in for `tokenizers` (test_fixture_flow.py only): a byte-level tokenizer without
merges (ids 2..257 = bytes, 0/1 = BOS/EOS) behind the training API train_v4_fixture uses; its
saved tokenizer.json is a real one (DeepSeek pre-tokenizer, ByteLevel, BOS template) that
quantforge calib-data reads to the same ids."""
import json

__version__ = "mock"


def _b2u():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


B2U = _b2u()


class Regex:
    def __init__(self, pattern):
        self.pattern = pattern


class _J:
    def __init__(self, j):
        self.j = j


class models:  # noqa: N801
    class BPE:
        def __init__(self, *a, **k):
            pass


class normalizers:  # noqa: N801
    class Sequence(_J):
        def __init__(self, items):
            super().__init__({"type": "Sequence", "normalizers": [i.j for i in items]})


class pre_tokenizers:  # noqa: N801
    class Split(_J):
        def __init__(self, pattern, behavior, invert=False):
            super().__init__({"type": "Split", "pattern": {"Regex": pattern.pattern},
                              "behavior": behavior.capitalize(), "invert": invert})

    class ByteLevel(_J):
        def __init__(self, add_prefix_space=True, trim_offsets=True, use_regex=True):
            super().__init__({"type": "ByteLevel", "add_prefix_space": add_prefix_space,
                              "trim_offsets": trim_offsets, "use_regex": use_regex})

        @staticmethod
        def alphabet():
            return sorted(B2U.values())

    class Sequence(_J):
        def __init__(self, items):
            super().__init__({"type": "Sequence", "pretokenizers": [i.j for i in items]})


class decoders:  # noqa: N801
    class ByteLevel(_J):
        def __init__(self):
            super().__init__({"type": "ByteLevel", "add_prefix_space": True,
                              "trim_offsets": True, "use_regex": True})


class trainers:  # noqa: N801
    class BpeTrainer:
        def __init__(self, vocab_size=0, special_tokens=(), **k):
            self.special_tokens = list(special_tokens)


class processors:  # noqa: N801
    class TemplateProcessing(_J):
        def __init__(self, single, pair, special_tokens):
            def pieces(s):
                out = []
                for p in s.split():
                    name, _, tid = p.partition(":")
                    tid = int(tid or 0)
                    out.append({"Sequence": {"id": name[1:], "type_id": tid}} if name.startswith("$")
                               else {"SpecialToken": {"id": name, "type_id": tid}})
                return out
            super().__init__({"type": "TemplateProcessing", "single": pieces(single),
                              "pair": pieces(pair),
                              "special_tokens": {t: {"id": t, "ids": [i], "tokens": [t]}
                                                 for t, i in special_tokens}})


class Encoding:
    def __init__(self, ids):
        self.ids = ids


class Tokenizer:
    def __init__(self, model=None):
        self.normalizer = self.pre_tokenizer = self.decoder = self.post_processor = None
        self.specials = []

    def train_from_iterator(self, it, trainer=None, length=None):
        for _ in it:
            pass
        self.specials = list(trainer.special_tokens)

    def token_to_id(self, t):
        return self.specials.index(t) if t in self.specials else None

    def get_vocab_size(self):
        return len(self.specials) + 256

    def encode(self, text):
        ids = [b + len(self.specials) for b in text.encode("utf-8")]
        return Encoding(([0] if self.post_processor is not None else []) + ids)

    def encode_batch(self, texts):
        return [self.encode(t) for t in texts]

    def decode(self, ids):
        n = len(self.specials)
        return bytes(i - n for i in ids if i >= n).decode("utf-8", errors="replace")

    def save(self, path):
        n = len(self.specials)
        vocab = {t: i for i, t in enumerate(self.specials)}
        vocab.update({B2U[b]: b + n for b in range(256)})
        j = {"version": "1.0", "truncation": None, "padding": None,
             "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False,
                               "rstrip": False, "normalized": False, "special": True}
                              for i, t in enumerate(self.specials)],
             "normalizer": self.normalizer.j if self.normalizer else None,
             "pre_tokenizer": self.pre_tokenizer.j, "post_processor": self.post_processor.j,
             "decoder": self.decoder.j,
             "model": {"type": "BPE", "dropout": None, "unk_token": None,
                       "continuing_subword_prefix": None, "end_of_word_suffix": None,
                       "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                       "vocab": vocab, "merges": []}}
        with open(path, "w", encoding="utf-8") as f:
            json.dump(j, f, ensure_ascii=False)

    @staticmethod
    def from_file(path):
        j = json.load(open(path, encoding="utf-8"))
        t = Tokenizer()
        t.specials = [a["content"] for a in sorted(j["added_tokens"], key=lambda a: a["id"])]
        t.post_processor = _J(j["post_processor"]) if j.get("post_processor") else None
        return t
