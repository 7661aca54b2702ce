#!/usr/bin/env python3
"""End-to-end test of `whale serve` with the official `openai` and `anthropic` Python clients (what users point
at it).

Starts `whale serve MODEL` on 127.0.0.1 (a free port), then checks, against the same model run by `whale run`
and `whale score`:
  - plain and streamed chat give the same text at temperature 0, equal to `whale run --chat --temp 0`;
  - logprobs / top_logprobs, stop strings, max_tokens (finish_reason length), n = 2, usage and cached tokens;
  - /v1/completions with echo + logprobs and max_tokens 0 equals `whale score`'s log-probabilities;
  - 8 concurrent streams each equal to the same request alone (batch invariance);
  - a client that disconnects mid-stream, then normal service;
  - Anthropic's Messages API: the same text and token counts, streamed events, system prompt, count_tokens,
    stop_sequences, errors in Anthropic's shape;
  - the API key (401 without it), malformed requests (400 naming the parameter), an oversized prompt;
  - the server's memory stays flat over 250 requests.
Usage: scripts/test-serve.py WHALE_BINARY MODEL.  Needs `pip install openai anthropic`. Prints 'N passed, N failed'.
"""
import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import anthropic
import openai

WHALE, MODEL = sys.argv[1], sys.argv[2]
KEY = "test-key-123"
passed = failed = 0


def check(name, condition, detail=""):
    global passed, failed
    if condition:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(port, seconds=120):
    """Waits until the server's /health answers 200; False if it does not within `seconds`."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return True
        except Exception:
            time.sleep(0.3)
    return False


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def raw(port, path, body, key=KEY):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


port = free_port()
server = subprocess.Popen(
    [WHALE, "serve", MODEL, "--port", str(port), "--parallel", "8", "--ctx", "1024", "--api-key", KEY],
    stderr=subprocess.PIPE, text=True)
try:
    if not healthy(port):
        raise SystemExit("whale serve did not come up: " + (server.stderr.read() if server.poll() is not None else ""))

    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0, timeout=120)
    question = "What is the capital of France? Answer in one sentence."
    messages = [{"role": "user", "content": question}]

    # Plain chat equals `whale run --chat --temp 0`.
    reply = client.chat.completions.create(model="m", messages=messages, temperature=0, max_tokens=40)
    run = subprocess.run([WHALE, "run", MODEL, "--chat", "-p", question, "--temp", "0", "-n", "40", "--json"],
                         capture_output=True, text=True, check=True)
    expected = json.loads(run.stdout)
    check("chat equals whale run --chat", reply.choices[0].message.content == expected["text"],
          repr((reply.choices[0].message.content, expected["text"])))
    check("chat usage", reply.usage.completion_tokens == len(expected["tokens"])
          and reply.usage.prompt_tokens == len(expected["prompt_tokens"]), str(reply.usage))
    check("chat finish_reason", reply.choices[0].finish_reason in ("stop", "length"))

    # Streamed chat gives the same text; include_usage adds a usage chunk.
    pieces, finish, usage = [], None, None
    for chunk in client.chat.completions.create(model="m", messages=messages, temperature=0, max_tokens=40,
                                                stream=True, stream_options={"include_usage": True}):
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    check("streamed chat equals plain", "".join(pieces) == reply.choices[0].message.content)
    check("stream usage chunk", usage is not None and usage.completion_tokens == reply.usage.completion_tokens)
    check("cached prompt tokens reported", usage is not None and usage.prompt_tokens_details.cached_tokens > 0,
          str(usage))

    # Logprobs.
    lp = client.chat.completions.create(model="m", messages=messages, temperature=0, max_tokens=5, logprobs=True,
                                        top_logprobs=3)
    content = lp.choices[0].logprobs.content
    check("logprobs per token", len(content) == lp.usage.completion_tokens and all(len(t.top_logprobs) == 3 for t in content))
    check("greedy token is the top logprob", all(abs(t.logprob - t.top_logprobs[0].logprob) < 1e-6 for t in content))

    # Length and stop.
    short = client.chat.completions.create(model="m", messages=messages, temperature=0, max_tokens=3)
    check("max_tokens gives finish_reason length", short.choices[0].finish_reason == "length"
          and short.usage.completion_tokens == 3)
    full = reply.choices[0].message.content
    if len(full) > 8:
        stop = full[4:8]
        stopped = client.chat.completions.create(model="m", messages=messages, temperature=0, max_tokens=40, stop=[stop])
        check("stop string cuts the text", stopped.choices[0].message.content == full[:full.index(stop)]
              and stopped.choices[0].finish_reason == "stop", repr(stopped.choices[0].message.content))

    # n = 2 with a seed: two choices, reproducible.
    two = client.chat.completions.create(model="m", messages=messages, temperature=1.0, max_tokens=12, n=2, seed=5)
    again = client.chat.completions.create(model="m", messages=messages, temperature=1.0, max_tokens=12, n=2, seed=5)
    check("n = 2", len(two.choices) == 2 and [c.index for c in two.choices] == [0, 1])
    check("seeded choices repeat", [c.message.content for c in two.choices] == [c.message.content for c in again.choices])

    # Completions: echo + logprobs with max_tokens 0 equals whale score.
    text = "The capital of France is Paris."
    echo = client.completions.create(model="m", prompt=text, max_tokens=0, echo=True, logprobs=1)
    score = json.loads(subprocess.run([WHALE, "score", MODEL, "--text", text, "--json", "--top", "1"],
                                      capture_output=True, text=True, check=True).stdout)
    lps = echo.choices[0].logprobs.token_logprobs
    check("echo logprobs count", len(lps) == len(score["logprobs"]), f"{len(lps)} vs {len(score['logprobs'])}")
    check("echo logprobs equal whale score",
          lps[0] is None and all(abs(a - b) < 1e-4 for a, b in zip(lps[1:], score["logprobs"][1:])))
    check("echo text", echo.choices[0].text.endswith("Paris."), repr(echo.choices[0].text))
    completion = client.completions.create(model="m", prompt=[1, 2, 3, 4], max_tokens=6, temperature=0)
    check("completion from token ids", completion.usage.prompt_tokens == 4 and completion.usage.completion_tokens <= 6)

    # Anthropic's Messages API with the official anthropic client: the same answer as whale run --chat. The
    # current SDK has no temperature argument (Anthropic dropped it); the server still reads the field.
    GREEDY = {"temperature": 0}
    claude = anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key=KEY, max_retries=0, timeout=120)
    message = claude.messages.create(model="m", max_tokens=40, messages=messages, extra_body=GREEDY)
    check("anthropic: text equals whale run --chat",
          [b.type for b in message.content] == ["text"] and message.content[0].text == expected["text"],
          repr(message.content))
    check("anthropic: usage and stop_reason",
          message.usage.output_tokens == len(expected["tokens"])
          and message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0) == len(expected["prompt_tokens"])
          and message.stop_reason == ("max_tokens" if expected["finish_reason"] == "length" else "end_turn"),
          str(message))
    with claude.messages.stream(model="m", max_tokens=40, messages=messages, extra_body=GREEDY) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    check("anthropic: streamed equals plain", final.content[0].text == message.content[0].text
          and final.usage.output_tokens == message.usage.output_tokens, repr(final.content))
    check("anthropic: event sequence", kinds[0] == "message_start" and kinds[-1] == "message_stop"
          and "content_block_start" in kinds and "content_block_stop" in kinds and "message_delta" in kinds, str(kinds))
    system = "You are a pirate."
    pirate = claude.messages.create(model="m", max_tokens=24, system=system, messages=messages, extra_body=GREEDY)
    run = json.loads(subprocess.run([WHALE, "run", MODEL, "--chat", "--system", system, "-p", question, "--temp", "0",
                                     "-n", "24", "--json"], capture_output=True, text=True, check=True).stdout)
    check("anthropic: system prompt", pirate.content[0].text == run["text"], repr(pirate.content[0].text))
    counted = claude.messages.count_tokens(model="m", messages=messages)
    check("anthropic: count_tokens", counted.input_tokens == len(expected["prompt_tokens"]), str(counted))
    if len(full) > 8:
        stop = full[4:8]
        cut = claude.messages.create(model="m", max_tokens=40, messages=messages, stop_sequences=[stop],
                                     extra_body=GREEDY)
        check("anthropic: stop_sequences", cut.stop_reason == "stop_sequence" and cut.stop_sequence == stop
              and cut.content[0].text == full[:full.index(stop)], str(cut))
    try:
        claude.messages.create(model="m", max_tokens=10, messages=[{"role": "wizard", "content": "x"}])
        check("anthropic: 400 in Anthropic's shape", False)
    except anthropic.BadRequestError as error:
        check("anthropic: 400 in Anthropic's shape", error.body["type"] == "error"
              and error.body["error"]["type"] == "invalid_request_error" and "role" in error.body["error"]["message"],
              str(error.body))
    try:
        anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key="wrong", max_retries=0).messages.create(
            model="m", max_tokens=1, messages=messages)
        check("anthropic: 401 for a wrong x-api-key", False)
    except anthropic.AuthenticationError as error:
        check("anthropic: 401 for a wrong x-api-key", error.body["error"]["type"] == "authentication_error")

    # Eight concurrent streams, each equal to its own run alone.
    prompts = [f"Count to {i} and then say a color." for i in range(3, 11)]

    def alone(p):
        r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": p}], temperature=0,
                                           max_tokens=24)
        return r.choices[0].message.content

    def streamed(p):
        out = []
        for chunk in client.chat.completions.create(model="m", messages=[{"role": "user", "content": p}],
                                                    temperature=0, max_tokens=24, stream=True):
            for choice in chunk.choices:
                out.append(choice.delta.content or "")
        return "".join(out)

    singles = [alone(p) for p in prompts]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        together = list(pool.map(streamed, prompts))
    check("8 concurrent streams equal single runs", together == singles,
          str([i for i, (a, b) in enumerate(zip(together, singles)) if a != b]))

    # A client that disconnects mid-stream; the server goes on serving.
    stream = client.chat.completions.create(model="m", messages=messages, temperature=0, max_tokens=200, stream=True)
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    after = client.chat.completions.create(model="m", messages=messages, temperature=0, max_tokens=40)
    check("service after a disconnect", after.choices[0].message.content == reply.choices[0].message.content)

    # API key, malformed input, oversized prompt.
    status, body = raw(port, "/v1/models", None, key=None)
    check("401 without the API key", status == 401 and body["error"]["code"] == "invalid_api_key", str(body))
    status, body = raw(port, "/v1/models", None)
    check("models with the key", status == 200 and body["data"][0]["object"] == "model")
    status, _ = raw(port, "/health", None, key=None)
    check("health stays open", status == 200)
    bad = [
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"model": "m", "messages": messages, "temperature": -1}, "temperature"),
        ({"model": "m", "messages": messages, "logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"model": "m", "messages": messages, "n": 99}, "n"),
        ({"model": "m", "messages": messages, "tools": [{"type": "function"}]}, "tools[0]"),
        ({"model": "m", "messages": "hello"}, "messages"),
    ]
    for payload, param in bad:
        status, body = raw(port, "/v1/chat/completions", payload)
        check(f"400 names {param}", status == 400 and body.get("error", {}).get("param") == param, f"{status} {body}")
    status, body = raw(port, "/v1/chat/completions", {"model": "m", "messages": [
        {"role": "user", "content": "word " * 2000}]})
    check("oversized prompt: context_length_exceeded", status == 400
          and body["error"]["code"] == "context_length_exceeded", str(body)[:200])
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=b"{not json",
                                     headers={"Authorization": f"Bearer {KEY}"})
    try:
        urllib.request.urlopen(request)
        check("400 for bad JSON", False)
    except urllib.error.HTTPError as error:
        check("400 for bad JSON", error.code == 400)

    # Memory stays flat over 250 requests.
    start = rss_kib(server.pid)
    for i in range(250):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": f"Say {i}."}],
                                       temperature=0, max_tokens=2)
    end = rss_kib(server.pid)
    check("RSS stable over 250 requests", end - start < 20 * 1024, f"{start} -> {end} KiB")
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    check("metrics", "whale_requests_total" in metrics and "whale_time_to_first_token_seconds" in metrics)
finally:
    server.terminate()
    try:
        code = server.wait(timeout=30)
        check("SIGTERM: exit 0", code == 0, f"exit {code}")
    except subprocess.TimeoutExpired:
        server.kill()
        check("SIGTERM: exit 0", False, "did not exit")

# Tool calls, on a second server with Qwen2.5's template (ChatML, which SmolLM2 speaks). SmolLM2-135M is too small
# to call tools on its own (asked, it answers in text), so `tool_choice: required` opens the call for it, and the
# forced requests name the tool (asked only about the weather, it makes up a tool name at greedy).
port = free_port()
server = subprocess.Popen([WHALE, "serve", MODEL, "--port", str(port), "--chat-template", "qwen2.5"],
                          stderr=subprocess.DEVNULL)
try:
    if not healthy(port):
        raise SystemExit("whale serve (qwen2.5 template) did not come up")
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=120)
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    ask = [{"role": "user", "content": "What's the weather in Paris?"}]
    forced_ask = [{"role": "user", "content": "Call get_weather for Paris."}]
    forced = client.chat.completions.create(model="m", messages=forced_ask, tools=tools, tool_choice="required",
                                            temperature=0, max_tokens=60)
    calls = forced.choices[0].message.tool_calls or []
    check("tools: required gives a tool call", forced.choices[0].finish_reason == "tool_calls" and len(calls) == 1
          and calls[0].id.startswith("call_") and calls[0].type == "function", str(forced.choices[0]))
    check("tools: arguments are a JSON object string",
          bool(calls) and isinstance(json.loads(calls[0].function.arguments), dict), str(calls))
    deltas, finish = {}, None
    for chunk in client.chat.completions.create(model="m", messages=forced_ask, tools=tools, tool_choice="required",
                                                temperature=0, max_tokens=60, stream=True):
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or []:
                entry = deltas.setdefault(call.index, {"name": "", "arguments": ""})
                entry["name"] += (call.function.name or "") if call.function else ""
                entry["arguments"] += (call.function.arguments or "") if call.function else ""
    check("tools: streamed call equals plain", finish == "tool_calls" and bool(calls)
          and list(deltas.values()) == [{"name": calls[0].function.name, "arguments": calls[0].function.arguments}],
          str(deltas))
    history = forced_ask + [forced.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": calls[0].id if calls else "x", "content": "{\"temp_c\": 18}"}]
    answer = client.chat.completions.create(model="m", messages=history, tools=tools, temperature=0, max_tokens=30)
    check("tools: a tool result is fed back", answer.choices[0].finish_reason in ("stop", "length")
          and answer.usage.prompt_tokens > forced.usage.prompt_tokens, str(answer.choices[0]))
    named = client.chat.completions.create(model="m", messages=ask, tools=tools, temperature=0, max_tokens=60,
                                           tool_choice={"type": "function", "function": {"name": "get_weather"}})
    message = named.choices[0].message
    check("tools: a malformed call comes back as text, not an error",
          named.choices[0].finish_reason != "tool_calls" and (message.content or "").startswith("<tool_call>")
          or named.choices[0].finish_reason == "tool_calls" and message.tool_calls[0].function.name == "get_weather",
          str(named.choices[0]))
    plain = client.chat.completions.create(model="m", messages=ask, tools=tools, temperature=0, max_tokens=20)
    check("tools: auto without a call answers in text", plain.choices[0].message.tool_calls is None
          and plain.choices[0].message.content, str(plain.choices[0]))

    # The same through Anthropic's API: tools, tool_choice any, tool_use blocks, a tool_result fed back.
    claude = anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key="none", max_retries=0, timeout=120)
    claude_tools = [{"name": "get_weather", "description": "Get the current weather in a city.",
                     "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                      "required": ["city"]}}]
    used = claude.messages.create(model="m", max_tokens=60, messages=forced_ask, tools=claude_tools,
                                  tool_choice={"type": "any"}, extra_body={"temperature": 0})
    blocks = [b for b in used.content if b.type == "tool_use"]
    check("anthropic tools: tool_use block", used.stop_reason == "tool_use" and len(blocks) == 1
          and blocks[0].id.startswith("toolu_") and isinstance(blocks[0].input, dict)
          and bool(calls) and blocks[0].name == calls[0].function.name
          and blocks[0].input == json.loads(calls[0].function.arguments), str(used))
    with claude.messages.stream(model="m", max_tokens=60, messages=forced_ask, tools=claude_tools,
                                tool_choice={"type": "any"}, extra_body={"temperature": 0}) as stream:
        streamed = stream.get_final_message()
    streamed_blocks = [b for b in streamed.content if b.type == "tool_use"]
    check("anthropic tools: streamed input equals plain", streamed.stop_reason == "tool_use" and bool(blocks)
          and [(b.name, b.input) for b in streamed_blocks] == [(blocks[0].name, blocks[0].input)], str(streamed))
    if blocks:
        after = claude.messages.create(
            model="m", max_tokens=20, tools=claude_tools, extra_body={"temperature": 0},
            messages=forced_ask + [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in used.content]},
                            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": blocks[0].id,
                                                          "content": "18 degrees and sunny"}]}])
        check("anthropic tools: a tool_result is fed back", after.stop_reason in ("end_turn", "max_tokens")
              and after.usage.input_tokens + (after.usage.cache_read_input_tokens or 0) > used.usage.input_tokens,
              str(after))
finally:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
