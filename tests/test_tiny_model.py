"""The locally built tiny Llama-3.2 model loads in transformers and torchtune, identically.

Real libraries, no mocks: the model is built once per session (tests/conftest.py) into a tmp dir.
"""
from __future__ import annotations

import json

import pytest

from conftest import tiny_build_env

torch = pytest.importorskip("torch")
pytest.importorskip("torchtune")
pytest.importorskip("transformers")

from cruijff_kit.models import tiny  # noqa: E402

STRINGS = [
    "42,43,44,45,46",
    "42, 43, 44, 45, 46",
    "The answer is 47.",
    "Continue the sequence: 7,8,9,10,11",
    "You are a helpful assistant.\n\nReply with one word!",
    "  leading spaces, trailing spaces  ",
    "Numbers 1234567 and 3.14159; also -5.",
    "don't we'll it's I'M",
    "Unicode: héllo wörld, naïve café 你好 🙂",
]

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant. Answer with a number."},
    {"role": "user", "content": "Continue: 42,43,44,45,46"},
    {"role": "assistant", "content": "47"},
]


@pytest.fixture(scope="module")
def model_dir(tiny_model):
    return tiny_model  # tests/conftest.py: built once per session (seed 0)


@pytest.fixture(scope="module")
def hf_tok(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def tt_tok(model_dir):
    from torchtune.models.llama3 import llama3_tokenizer

    return llama3_tokenizer(path=str(model_dir / tiny.TINY_TOKENIZER_PATH))


def test_files_and_config(model_dir):
    for name in tiny.FILES:
        assert (model_dir / name).is_file(), name
    assert tiny.is_tiny(model_dir, seed=0)
    assert not tiny.is_tiny(model_dir, seed=1)
    cfg = json.loads((model_dir / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"]
    assert cfg["vocab_size"] == tiny.TINY_COMPONENT["vocab_size"] == 128256
    assert cfg["hidden_size"] == tiny.TINY_COMPONENT["embed_dim"] == 64
    assert cfg["num_hidden_layers"] == tiny.TINY_COMPONENT["num_layers"] == 2
    assert cfg["tie_word_embeddings"] is True
    assert (cfg["bos_token_id"], cfg["eos_token_id"]) == (128000, 128009)
    lines = (model_dir / tiny.TINY_TOKENIZER_PATH).read_text().splitlines()
    assert len(lines) == 128000 and lines[0].split(" ")[1] == "0"
    # modes follow the umask like any file we write (safetensors alone would give 0600, mkdtemp 0700)
    mode = (model_dir / "config.json").stat().st_mode & 0o777
    assert (model_dir / "model.safetensors").stat().st_mode & 0o777 == mode
    fresh = model_dir.parent / "fresh"
    fresh.mkdir()
    assert model_dir.stat().st_mode & 0o777 == fresh.stat().st_mode & 0o777
    fresh.rmdir()
    assert not list(model_dir.parent.glob(f".{model_dir.name}.build-*"))


def test_write_if_missing_is_cheap_and_guarded(model_dir, tmp_path):
    before = (model_dir / "model.safetensors").stat().st_mtime_ns
    assert tiny.write_tiny_if_missing(model_dir) == model_dir
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == before
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not a model")
    with pytest.raises(FileExistsError):
        tiny.make_tiny(foreign)


def test_deterministic_bytes(model_dir, tmp_path):
    tiny._tokenizer_artifacts.cache_clear()  # retrain the BPE too, not just reuse it
    again = tiny.make_tiny(tmp_path / "again", seed=0)
    for name in tiny.FILES:
        assert (again / name).read_bytes() == (model_dir / name).read_bytes(), name
    other = tiny.make_tiny(tmp_path / "other", seed=1)
    assert (other / "model.safetensors").read_bytes() != (model_dir / "model.safetensors").read_bytes()
    # the tokenizer does not depend on the seed (tiktoken caches it by path)
    assert (other / "tokenizer.json").read_bytes() == (model_dir / "tokenizer.json").read_bytes()


def test_transformers_loads(model_dir, hf_tok):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    n_params = sum(p.numel() for p in model.parameters())
    assert 8.0e6 < n_params < 8.6e6
    assert model.config.tie_word_embeddings
    assert len(hf_tok) == 128256
    assert (hf_tok.bos_token_id, hf_tok.eos_token_id, hf_tok.pad_token_id) == (128000, 128009, 128004)
    ids = hf_tok("The answer is", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert ids["input_ids"].shape[1] < out.shape[1] <= ids["input_ids"].shape[1] + 3


def test_same_ids_in_both_tokenizers(hf_tok, tt_tok):
    assert tt_tok.base_vocab_size == 128000
    for text in STRINGS:
        plain = hf_tok.encode(text, add_special_tokens=False)
        assert plain == tt_tok.encode(text, add_bos=False, add_eos=False), text
        assert hf_tok.encode(text) == tt_tok.encode(text, add_bos=True, add_eos=False) == [128000, *plain]
        assert hf_tok.decode(plain) == text
    # numbers tokenize as Llama 3 does: 1-3 digit chunks, one token each, commas separate
    assert [hf_tok.decode([i]) for i in hf_tok.encode("42,43,44,45,46", add_special_tokens=False)] == \
        ["42", ",", "43", ",", "44", ",", "45", ",", "46"]
    for name, token_id in [("<|begin_of_text|>", 128000), ("<|start_header_id|>", 128006),
                           ("<|end_header_id|>", 128007), ("<|eot_id|>", 128009)]:
        assert hf_tok.convert_tokens_to_ids(name) == token_id == tt_tok.special_tokens[name]


def test_chat_template_matches_torchtune(hf_tok, tt_tok):
    from torchtune.data import Message

    tt_msgs = [Message(role=m["role"], content=m["content"], masked=m["role"] != "assistant")
               for m in MESSAGES]
    tt_ids, tt_mask = tt_tok.tokenize_messages(tt_msgs)
    # training: torchtune appends <|end_of_text|> after the last <|eot_id|>; the template does not
    assert tt_ids[-1] == 128001
    text = hf_tok.apply_chat_template(MESSAGES, tokenize=False)
    assert text.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n")
    hf_ids = hf_tok.encode(text, add_special_tokens=False)
    assert hf_ids == tt_ids[:-1]

    # evaluation: the generation prompt is exactly the masked prefix torchtune trains on
    prompt = hf_tok.apply_chat_template(MESSAGES[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    prompt_ids = hf_tok.encode(prompt, add_special_tokens=False)
    gen_ids, _ = tt_tok.tokenize_messages(
        [*tt_msgs[:2], Message(role="assistant", content="", masked=True)], add_end_tokens=False)
    assert prompt_ids == gen_ids == tt_ids[: len(prompt_ids)]
    # what the model is trained on: the assistant message (torchtune trains its header too)
    target = [i for i, masked in zip(tt_ids, tt_mask) if not masked]
    enc = lambda t: hf_tok.encode(t, add_special_tokens=False)  # noqa: E731
    assert target == [128006, *enc("assistant"), 128007, *enc("\n\n"), *enc("47"), 128009]
    assert tt_ids[len(prompt_ids):-1] == [*enc("47"), 128009]


def test_logits_match_torchtune(model_dir, tmp_path):
    from torchtune.config import instantiate
    from torchtune.training import FullModelHFCheckpointer
    from transformers import AutoModelForCausalLM
    from omegaconf import OmegaConf

    hf_model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    cfg = OmegaConf.create({**tiny.TINY_COMPONENT, "lora_attn_modules": ["q_proj", "k_proj", "v_proj", "output_proj"],
                            "apply_lora_to_mlp": True, "lora_rank": 8, "lora_alpha": 16, "lora_dropout": 0.0})
    tt_model = instantiate(cfg)
    ckpt = FullModelHFCheckpointer(checkpoint_dir=str(model_dir), checkpoint_files=tiny.TINY_CHECKPOINT_FILES,
                                   model_type=tiny.TINY_MODEL_TYPE, output_dir=str(tmp_path / "out"))
    state = ckpt.load_checkpoint()["model"]
    missing, unexpected = tt_model.load_state_dict(state, strict=False)
    assert not unexpected
    assert missing and all("lora_" in k for k in missing)  # only the (zero-init B) adapters
    tt_model.eval()

    gen = torch.Generator().manual_seed(0)
    ids = torch.cat([torch.tensor([[128000, 128006]]), torch.randint(0, 128256, (1, 60), generator=gen)], dim=1)
    with torch.no_grad():
        hf_logits = hf_model(ids).logits
        tt_logits = tt_model(ids)
    assert hf_logits.shape == tt_logits.shape == (1, 62, 128256)
    assert torch.allclose(hf_logits, tt_logits, atol=1e-4, rtol=0)
    assert hf_logits.std() > 0.5  # std-0.25 embeddings: logits are not all ~0


def test_torchtune_merged_checkpoint_loads_in_transformers(model_dir, tmp_path):
    """What a finished run hands to evaluation: torchtune's merged HF checkpoint of the tiny model."""
    from torchtune.models.llama3_2 import lora_llama3_2
    from torchtune.modules.peft import get_adapter_params, get_adapter_state_dict, get_merged_lora_ckpt
    from torchtune.training import FullModelHFCheckpointer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    arch = {k: v for k, v in tiny.TINY_COMPONENT.items() if k != "_component_"}
    model = lora_llama3_2(lora_attn_modules=["q_proj", "v_proj"], lora_rank=4, lora_alpha=8, **arch)
    ckpt = FullModelHFCheckpointer(checkpoint_dir=str(model_dir), checkpoint_files=tiny.TINY_CHECKPOINT_FILES,
                                   model_type=tiny.TINY_MODEL_TYPE, output_dir=str(tmp_path))
    model.load_state_dict(ckpt.load_checkpoint()["model"], strict=False)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in get_adapter_params(model).values():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    ids = torch.tensor([[128000, 19, 11, 17, 11, 18]])
    with torch.no_grad():
        expected = model.eval()(ids)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    ckpt.save_checkpoint({"model": get_merged_lora_ckpt(state, rank=4, alpha=8),
                          "adapter": get_adapter_state_dict(state)}, epoch=0, intermediate_checkpoint=False)
    epoch_dir = tmp_path / "epoch_0"
    merged = AutoModelForCausalLM.from_pretrained(epoch_dir).eval()
    assert len(AutoTokenizer.from_pretrained(epoch_dir)) == 128256
    with torch.no_grad():
        got = merged(ids).logits
    assert torch.allclose(got, expected, atol=1e-4, rtol=0)
    assert (epoch_dir / tiny.TINY_TOKENIZER_PATH).is_file()


# --------------------------------------------------------------------------- the hazard families
from cruijff_kit.models.tiny_families import FAMILIES, HAZARD_FAMILIES, KINDS, QWEN_DEFAULT_SYSTEM  # noqa: E402


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    with tiny_build_env():
        yield {f: tiny.make_tiny(root / f, family=f) for f in HAZARD_FAMILIES}


def _tt_tokenizer(family: str, model_dir):
    from torchtune.config._utils import _get_component_from_path

    kind = KINDS[FAMILIES[family].kind]
    builder = _get_component_from_path(kind.tokenizer_component)
    return builder(**{k: str(model_dir / v) for k, v in kind.tokenizer_files.items()})


@pytest.mark.parametrize("family", HAZARD_FAMILIES)
def test_family_tokenizers_agree_and_carry_real_specials(family, family_dirs):
    from transformers import AutoTokenizer

    model_dir = family_dirs[family]
    assert tiny.family_of(model_dir) == family and tiny.is_tiny(model_dir, family=family)
    hf = AutoTokenizer.from_pretrained(model_dir)
    tt = _tt_tokenizer(family, model_dir)
    for text in STRINGS:
        assert hf(text, add_special_tokens=False)["input_ids"] == tt.encode(text, add_bos=False, add_eos=False), text
    gen = json.loads((model_dir / "generation_config.json").read_text())
    eos = gen["eos_token_id"] if isinstance(gen["eos_token_id"], list) else [gen["eos_token_id"]]
    if FAMILIES[family].kind == "qwen2_5":
        assert hf.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [151643, 151644, 151645]
        assert hf.bos_token is None and hf.pad_token == "<|endoftext|>"
        assert eos == ([151645, 151643] if family == "qwen2_5_instruct" else [151643])
    else:
        assert hf.convert_tokens_to_ids(["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]) == [128000, 128001, 128009]
        assert eos == ([128001, 128008, 128009] if FAMILIES[family].instruct else [128001])


@pytest.mark.parametrize("family", HAZARD_FAMILIES)
def test_family_template_behaves_like_the_real_one(family, family_dirs):
    import time

    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(family_dirs[family])
    user = [{"role": "user", "content": "Continue: 1,2,3"}]
    if FAMILIES[family].chat_template is None:
        assert not hf.chat_template
        return
    text = hf.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    if family.startswith("llama3"):
        date = time.strftime("%d %b %Y") if family == "llama3_2_instruct" else "26 Jul 2024"
        assert text.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                               f"Cutting Knowledge Date: December 2023\nToday Date: {date}\n\n<|eot_id|>")
        with_sys = hf.apply_chat_template([{"role": "system", "content": "Be brief."}] + user, tokenize=False)
        assert f"Today Date: {date}\n\nBe brief.<|eot_id|>" in with_sys
    else:
        assert text == (f"<|im_start|>system\n{QWEN_DEFAULT_SYSTEM}<|im_end|>\n<|im_start|>user\nContinue: 1,2,3"
                        "<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("family", HAZARD_FAMILIES)
def test_family_logits_match_torchtune(family, family_dirs, tmp_path):
    from torchtune.config._utils import _get_component_from_path
    from torchtune.training import FullModelHFCheckpointer
    from transformers import AutoModelForCausalLM

    model_dir = family_dirs[family]
    kind = KINDS[FAMILIES[family].kind]
    arch = {k: v for k, v in kind.component.items() if k != "_component_"}
    builder = _get_component_from_path(kind.component["_component_"].replace(".lora_", "."))
    model = builder(**arch)
    ckpt = FullModelHFCheckpointer(checkpoint_dir=str(model_dir), checkpoint_files=["model.safetensors"],
                                   model_type=kind.model_type, output_dir=str(tmp_path))
    model.load_state_dict(ckpt.load_checkpoint()["model"])
    ids = torch.tensor([[10, 20, 30, 40, 50, 60]])
    hf = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():
        assert torch.allclose(model(ids), hf(ids).logits, atol=1e-5)
