"""The byte-level BPE of the tiny Llama models: a fixed synthetic corpus, the tiktoken file torchtune's
llama3 tokenizer reads, and the equivalent HF tokenizer.json (see tiny.py's design notes). The corpus and
the byte alphabet are shared with tiny_qwen.py. Heavy libraries are imported inside functions only.
"""
from __future__ import annotations

import random
from functools import lru_cache

# Same split regex as torchtune's llama3 tokenizer (CL100K_PATTERN) and Meta's Llama 3 tokenizer.json.
PAT_STR = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# --------------------------------------------------------------------------- corpus
_WORDS = """
the be to of and a in that have I it for not on with he as you do at this but his by from they we
say her she or an will my one all would there their what so up out if about who get which go me
when make can like time no just him know take people into year your good some could them see other
than then now look only come its over think also back after use two how our work first well way
even new want because any these give day most us is are was were been has had did said answer
question number numbers next sequence continue count list value sum total result correct wrong
true false yes no zero one two three four five six seven eight nine ten hundred thousand first
second third last before after between more less equal greater smaller add plus minus times
please output only single word name reply respond following given input example task model
assistant user system helpful you are a an follow instructions short long text sentence word
letter letters capital city country color red green blue yellow black white cat dog bird fish
tree house car book water food happy sad big small hot cold fast slow left right up down
here where why how what which who whom whose when while until since because although though
Paris France London Berlin Rome Madrid Tokyo Alice Bob Carol Dave Monday Friday January
predict predictable random pattern rule even odd prime digit digits integer comma separated
""".split()

_PUNCT = [".", ",", "?", "!", ":", ";", "-", "'", '"', "(", ")", "/", "=", "+", "*", "#", "[", "]"]


def _corpus() -> list[str]:
    """A fixed synthetic corpus (independent of the weight seed)."""
    rng = random.Random(20240607)
    words = _WORDS
    docs: list[str] = []
    # All 1-3 digit numbers, many times, in the formats the sanity checks use.
    for start in range(0, 1000):
        seq = [str((start + k) % 1000) for k in range(6)]
        docs.append(",".join(seq))
        docs.append(", ".join(seq))
        docs.append(" ".join(seq))
        docs.append(f"The answer is {seq[-1]}.")
    for _ in range(4000):
        n = rng.randint(0, 10 ** rng.randint(1, 7))
        docs.append(f"{rng.choice(words)} {n}{rng.choice(_PUNCT)}")
    # Sentences of common words, capitalised and not, with punctuation and newlines.
    for _ in range(6000):
        k = rng.randint(3, 12)
        sent = " ".join(rng.choice(words) for _ in range(k))
        if rng.random() < 0.5:
            sent = sent[:1].upper() + sent[1:]
        sent += rng.choice([".", ".", "?", "!", ":", ","])
        if rng.random() < 0.3:
            sent += rng.choice(["\n", "\n\n", " "]) + rng.choice(words).capitalize()
        docs.append(sent)
    for w in words:
        docs.extend([w, " " + w, w.capitalize(), " " + w.capitalize(), w.upper()])
    for p in _PUNCT:
        docs.extend([p, " " + p, p + "\n", p + "\n\n"])
    docs.extend(["system", "user", "assistant", "\n\n", "\n", "  ", "    "] * 50)
    return docs


# --------------------------------------------------------------------------- tokenizer
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 byte-level alphabet: every byte maps to one printable unicode character."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    mapping = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


@lru_cache(maxsize=1)
def _tokenizer_artifacts() -> tuple[bytes, str]:
    """(original/tokenizer.model bytes, tokenizer.json text). Deterministic and seed-independent."""
    import base64

    from cruijff_kit.models.tiny import BASE_VOCAB_SIZE, BOS_ID, VOCAB_SIZE, special_tokens

    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    def pre_tokenizer():
        return pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(PAT_STR), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ])

    trainer_tok = Tokenizer(models.BPE())
    trainer_tok.pre_tokenizer = pre_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=4096, min_frequency=2, show_progress=False, special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    trainer_tok.train_from_iterator(_corpus(), trainer=trainer)

    b2u = _bytes_to_unicode()
    u2b = {u: b for b, u in b2u.items()}
    trained = sorted(trainer_tok.get_vocab().items(), key=lambda kv: kv[1])
    ranks: list[bytes] = [bytes(u2b[ch] for ch in tok) for tok, _ in trained]
    assert [i for _, i in trained] == list(range(len(trained)))
    # Pad with tokens that text can never produce: 0xF8 never occurs in UTF-8.
    for i in range(BASE_VOCAB_SIZE - len(ranks)):
        ranks.append(b"\xf8" + f"{i:06d}".encode("ascii"))
    rank_of = {tok: r for r, tok in enumerate(ranks)}
    assert len(rank_of) == BASE_VOCAB_SIZE, "duplicate tokens in the base vocab"

    # tiktoken BPE file: base64(token) + " " + rank, one a line.
    tiktoken_model = "".join(
        f"{base64.b64encode(tok).decode('ascii')} {r}\n" for r, tok in enumerate(ranks)
    ).encode("ascii")

    # HF BPE equivalent to tiktoken's: every 2-way split of every token into vocab tokens is a merge,
    # ordered by the merged token's rank (then by the parts' ranks).
    merges = []
    for r, tok in enumerate(ranks):
        if tok[0] == 0xF8 and len(tok) > 1:
            continue
        for cut in range(1, len(tok)):
            left, right = tok[:cut], tok[cut:]
            if left in rank_of and right in rank_of:
                merges.append((r, rank_of[left], rank_of[right]))
    merges.sort()

    def uni(tok: bytes) -> str:
        return "".join(b2u[b] for b in tok)

    vocab = {uni(tok): r for r, tok in enumerate(ranks)}
    hf_merges = [(uni(ranks[a]), uni(ranks[b])) for _, a, b in merges]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=hf_merges, ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizer()
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A",
        pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
        special_tokens=[("<|begin_of_text|>", BOS_ID)],
    )
    specials = sorted(special_tokens().items(), key=lambda kv: kv[1])
    tok.add_special_tokens([AddedToken(name, special=True, normalized=False) for name, _ in specials])
    for name, i in specials:
        got = tok.token_to_id(name)
        assert got == i, f"{name}: id {got}, expected {i}"
    assert tok.get_vocab_size(with_added_tokens=True) == VOCAB_SIZE
    return tiktoken_model, tok.to_str(pretty=False)
