#!/usr/bin/env python3
"""End-to-end test of `whale pull`, `whale rm` and model names, against a local Hugging Face Hub.

Starts two HTTP servers on 127.0.0.1: a hub serving the routes huggingface_hub uses (model info with siblings
and LFS sha256; `resolve` with X-Repo-Commit, ETag, X-Linked-Etag, X-Linked-Size and, for LFS files, a
redirect to the second server) and a storage host for LFS content with Range requests. Both record every
request. Then checks, in temporary Hugging Face caches:
  - GGUF tag selection as llama.cpp's -hf (case-insensitive; Q4_K_M by default; a split GGUF in a subfolder,
    all shards; an unknown tag lists the tags there are), the cache layout huggingface_hub writes (blobs named
    by etag, relative snapshot links, refs/main), `whale rm REPO:TAG`;
  - a safetensors repository: config, tokenizer, the index and every shard it lists, fetched in parallel, and
    nothing else; `whale inspect` loads it by name;
  - names wherever a model is taken: `whale inspect org/name:TAG` pulls first, `--no-pull` and HF_HUB_OFFLINE=1
    refuse without a single request;
  - a pull killed mid-file resumes with a Range request from the partial size; a dropped connection is resumed
    within one pull; corrupted bytes are refused and leave nothing in the snapshot;
  - errors: unknown repository, gated repository (and HF_TOKEN, which never reaches the storage host), an
    unreachable endpoint, not enough disk;
  - huggingface_hub finds whale's downloads (hf_hub_download local_files_only, scan_cache_dir), and whale uses a
    cache huggingface_hub wrote against the same hub, offline.
Usage: scripts/test-hub.py WHALE_BINARY.  Needs `pip install huggingface_hub`. Prints 'N passed, N failed'.
"""
import hashlib
import http.server
import json
import os
import random
import re
import shutil
import signal
import socketserver
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

WHALE = os.path.abspath(sys.argv[1])
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "Tests/WhaleModelsTests/Fixtures/tiny-qwen2")
TOKEN = "hf_local_test_token"
passed = failed = 0


def check(name, condition, detail=""):
    global passed, failed
    if condition:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def split_safetensors(data):
    """The tensors of one safetensors file as two files (each a valid safetensors file) and their index."""
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    body = data[8 + length :]
    names = sorted(k for k in header if k != "__metadata__")
    shards, weight_map = {}, {}
    for number, part in enumerate([names[: len(names) // 2], names[len(names) // 2 :]], start=1):
        file = f"model-{number:05d}-of-00002.safetensors"
        new_header, chunks, offset = {}, [], 0
        for name in part:
            begin, end = header[name]["data_offsets"]
            chunks.append(body[begin:end])
            new_header[name] = dict(header[name], data_offsets=[offset, offset + end - begin])
            offset += end - begin
            weight_map[name] = file
        encoded = json.dumps(new_header).encode()
        encoded += b" " * (-len(encoded) % 8)
        shards[file] = struct.pack("<Q", len(encoded)) + encoded + b"".join(chunks)
    index = json.dumps({"metadata": {"total_size": sum(len(v) for v in shards.values())}, "weight_map": weight_map})
    return shards, index.encode()


def noise(size, seed):
    return random.Random(seed).randbytes(size)


TINY_GGUF = read(os.path.join(FIXTURES, "model-q8_0.gguf"))
SHARDS, INDEX = split_safetensors(read(os.path.join(FIXTURES, "model.safetensors")))
SAFETENSORS_FILES = {
    "config.json": read(os.path.join(FIXTURES, "config.json")),
    "generation_config.json": read(os.path.join(FIXTURES, "generation_config.json")),
    "tokenizer.json": read(os.path.join(FIXTURES, "tokenizer.json")),
    "tokenizer_config.json": read(os.path.join(FIXTURES, "tokenizer_config.json")),
    "model.safetensors.index.json": INDEX,
    "README.md": b"# tiny\n",
    "original/consolidated.pth": noise(300_000, 1),
    "flax_model.msgpack": noise(200_000, 2),
    **SHARDS,
}
REPOS = {
    "test-org/tiny-GGUF": {
        "README.md": b"# tiny GGUFs\n",
        "tiny-Q8_0.gguf": TINY_GGUF,
        "tiny-Q4_K_M.gguf": noise(150_000, 3),
        "sub/tiny-Q2_K-00001-of-00002.gguf": noise(120_000, 4),
        "sub/tiny-Q2_K-00002-of-00002.gguf": noise(80_000, 5),
        "mmproj-tiny-F16.gguf": noise(50_000, 6),
    },
    "test-org/tiny-safetensors": SAFETENSORS_FILES,
    "test-org/gated-GGUF": {"model-Q8_0.gguf": TINY_GGUF},
    "test-org/corrupt-GGUF": {"model-Q8_0.gguf": noise(100_000, 7)},
    "test-org/slow-GGUF": {"model-Q4_K_M.gguf": noise(6 << 20, 8)},
    "test-org/dropping-GGUF": {"model-Q4_K_M.gguf": noise(3 << 20, 9)},
    "test-org/huge-GGUF": {"model-Q4_K_M.gguf": noise(1000, 10)},
}
COMMITS = {repo: hashlib.sha1(repo.encode()).hexdigest() for repo in REPOS}
GATED = {"test-org/gated-GGUF"}
LFS_SUFFIXES = (".gguf", ".safetensors", ".pth", ".msgpack")


def is_lfs(path):
    return path.endswith(LFS_SUFFIXES)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def git_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Log:
    """Every request either server saw: (server, method, path, headers)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.entries = []
        self.active = 0
        self.most_active = 0

    def add(self, server, handler):
        with self.lock:
            self.entries.append((server, handler.command, handler.path, dict(handler.headers)))

    def clear(self):
        with self.lock:
            self.entries = []
            self.most_active = 0

    def of(self, server):
        with self.lock:
            return [e for e in self.entries if e[0] == server]


LOG = Log()
BLOBS = {}  # sha256 → (repo, path): what the storage host serves
SETTINGS = {"slow_bytes_per_second": 1 << 20, "drop_once": True, "storage_delay": 0.0}


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, headers=(), body=b"", send_body=True):
        self.send_response(status)
        has_length = False
        for name, value in headers:
            self.send_header(name, value)
            has_length |= name.lower() == "content-length"
        if not has_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body and body:
            self.wfile.write(body)

    def error(self, status, code, message):
        body = json.dumps({"error": message}).encode()
        self.reply(status, [("X-Error-Code", code), ("X-Error-Message", message), ("Content-Type", "application/json")],
                   body, self.command != "HEAD")


class HubHandler(Handler):
    def do_GET(self):
        self.route()

    def do_HEAD(self):
        self.route()

    def route(self):
        LOG.add("hub", self)
        url = urllib.parse.urlparse(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
        if parts[:2] == ["api", "models"]:
            # /api/models/{org}/{name}[/revision/{revision}]
            repo = "/".join(parts[2:4])
            revision = parts[5] if len(parts) > 5 and parts[4] in ("revision", "tree") else "main"
            if len(parts) > 4 and parts[4] == "tree":  # /api/models/{org}/{name}/tree/{revision}: snapshot_download
                return self.tree(repo, revision)
            return self.model_info(repo, revision)
        if len(parts) >= 5 and parts[2] == "resolve":
            return self.resolve("/".join(parts[:2]), parts[3], "/".join(parts[4:]))
        self.error(404, "EntryNotFound", "no such route")

    def known(self, repo, revision):
        if repo not in REPOS:
            self.error(401, "RepositoryNotFound", "Repository not found")
            return False
        if revision not in ("main", COMMITS[repo]):
            self.error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return False
        return True

    def model_info(self, repo, revision):
        if not self.known(repo, revision):
            return
        siblings = []
        for path, data in REPOS[repo].items():
            size = 1 << 60 if repo == "test-org/huge-GGUF" else len(data)
            entry = {"rfilename": path, "size": size, "blobId": git_sha1(data)}
            if is_lfs(path):
                entry["lfs"] = {"sha256": sha256(data), "size": size, "pointerSize": 134}
            siblings.append(entry)
        info = {"id": repo, "modelId": repo, "sha": COMMITS[repo], "private": False, "gated": repo in GATED and "auto",
                "siblings": siblings}
        self.reply(200, [("Content-Type", "application/json")], json.dumps(info).encode())

    def tree(self, repo, revision):
        if not self.known(repo, revision):
            return
        entries, folders = [], set()
        for path, data in REPOS[repo].items():
            entry = {"type": "file", "oid": git_sha1(data), "size": len(data), "path": path}
            if is_lfs(path):
                entry["lfs"] = {"oid": sha256(data), "size": len(data), "pointerSize": 134}
            entries.append(entry)
            folders.update("/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1))
        entries += [{"type": "directory", "oid": git_sha1(f.encode()), "size": 0, "path": f} for f in sorted(folders)]
        self.reply(200, [("Content-Type", "application/json")], json.dumps(entries).encode())

    def resolve(self, repo, revision, path):
        if not self.known(repo, revision):
            return
        if repo in GATED and self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self.error(401, "GatedRepo", f"Access to model {repo} is restricted.")
        data = REPOS[repo].get(path)
        if data is None:
            return self.error(404, "EntryNotFound", f"{path} does not exist")
        headers = [("X-Repo-Commit", COMMITS[repo])]
        if is_lfs(path):
            digest = sha256(data)
            BLOBS[digest] = (repo, path)
            size = 1 << 60 if repo == "test-org/huge-GGUF" else len(data)
            location = f"http://127.0.0.1:{STORAGE_PORT}/lfs/{digest}?repo={urllib.parse.quote(repo)}"
            headers += [("Location", location), ("X-Linked-Etag", f'"{digest}"'), ("X-Linked-Size", str(size)),
                        ("ETag", f'"{git_sha1(data)}"'), ("Content-Length", "0")]
            return self.reply(302, headers, b"", False)
        headers += [("ETag", f'"{git_sha1(data)}"'), ("Content-Type", "application/octet-stream")]
        self.reply(200, headers, data, self.command != "HEAD")


class StorageHandler(Handler):
    def do_HEAD(self):
        self.serve()

    def do_GET(self):
        self.serve()

    def serve(self):
        LOG.add("storage", self)
        with LOG.lock:
            LOG.active += 1
            LOG.most_active = max(LOG.most_active, LOG.active)
        try:
            self.serve_blob()
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with LOG.lock:
                LOG.active -= 1

    def serve_blob(self):
        digest = urllib.parse.urlparse(self.path).path.rsplit("/", 1)[-1]
        if digest not in BLOBS:
            return self.reply(404, body=b"no such blob")
        repo, path = BLOBS[digest]
        data = REPOS[repo][path]
        if repo == "test-org/corrupt-GGUF":
            data = bytes([data[0] ^ 0xFF]) + data[1:]  # one flipped byte
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
            if start >= len(data):
                return self.reply(416, [("Content-Range", f"bytes */{len(data)}")])
            headers = [("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")]
            status = 206
        else:
            headers, status = [], 200
        time.sleep(SETTINGS["storage_delay"])
        body = data[start:]
        self.send_response(status)
        for name, value in headers + [("Content-Length", str(len(body))), ("Accept-Ranges", "bytes")]:
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        chunk = 64 << 10
        for offset in range(0, len(body), chunk):
            if repo == "test-org/slow-GGUF" and SETTINGS["slow_bytes_per_second"]:
                time.sleep(chunk / SETTINGS["slow_bytes_per_second"])
            if repo == "test-org/dropping-GGUF" and SETTINGS["drop_once"] and offset >= (1 << 20):
                SETTINGS["drop_once"] = False
                self.wfile.flush()
                self.connection.shutdown(2)  # the connection drops mid-file
                self.close_connection = True
                return
            self.wfile.write(body[offset : offset + chunk])


hub = Server(("127.0.0.1", 0), HubHandler)
storage = Server(("127.0.0.1", 0), StorageHandler)
HUB_PORT, STORAGE_PORT = hub.server_address[1], storage.server_address[1]
for server in (hub, storage):
    threading.Thread(target=server.serve_forever, daemon=True).start()
ENDPOINT = f"http://127.0.0.1:{HUB_PORT}"
WORK = tempfile.mkdtemp(prefix="whale-hub-test-")


def environment(cache, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update({"HF_HUB_CACHE": cache, "HF_ENDPOINT": ENDPOINT, "HF_HOME": os.path.join(WORK, "hf-home"),
                "HF_HUB_DISABLE_TELEMETRY": "1"})
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


def whale(cache, *args, **extra):
    """Runs whale; returns (exit code, stdout, stderr)."""
    run = subprocess.run([WHALE, *args], env=environment(cache, **extra), capture_output=True, text=True, timeout=300)
    return run.returncode, run.stdout, run.stderr


def new_cache(name):
    path = os.path.join(WORK, name)
    shutil.rmtree(path, ignore_errors=True)
    return path


def folder(cache, repo):
    return os.path.join(cache, "models--" + repo.replace("/", "--"))


def snapshot_files(cache, repo):
    """Paths under the repository's snapshot of main → (link target, content)."""
    base = os.path.join(folder(cache, repo), "snapshots", COMMITS[repo])
    files = {}
    for directory, _, names in os.walk(base):
        for name in names:
            full = os.path.join(directory, name)
            content = read(full) if os.path.exists(full) else None
            files[os.path.relpath(full, base)] = (os.readlink(full) if os.path.islink(full) else None, content)
    return files


def blobs(cache, repo):
    directory = os.path.join(folder(cache, repo), "blobs")
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def last_line(text):
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


try:
    # --- GGUF repositories: tags, split files in a subfolder, the cache layout, rm ---------------------------
    cache = new_cache("gguf")
    gguf = REPOS["test-org/tiny-GGUF"]
    code, out, err = whale(cache, "pull", "test-org/tiny-GGUF:q8_0")
    files = snapshot_files(cache, "test-org/tiny-GGUF")
    check("pull REPO:q8_0 picks tiny-Q8_0.gguf, case-insensitively, and nothing else",
          code == 0 and sorted(files) == ["tiny-Q8_0.gguf"], f"{code} {sorted(files)} {err}")
    check("pull prints the path whale run loads",
          last_line(out) == os.path.join(folder(cache, "test-org/tiny-GGUF"), "snapshots", COMMITS["test-org/tiny-GGUF"],
                                         "tiny-Q8_0.gguf"), out)
    check("the snapshot file is a relative link to blobs/<sha256> with the file's bytes",
          files.get("tiny-Q8_0.gguf") == ("../../blobs/" + sha256(TINY_GGUF), TINY_GGUF), str(files.get("tiny-Q8_0.gguf"))[:200])
    ref = os.path.join(folder(cache, "test-org/tiny-GGUF"), "refs", "main")
    check("refs/main names the commit", os.path.exists(ref) and read(ref).decode() == COMMITS["test-org/tiny-GGUF"])
    check("one plain line per file when stderr is not a terminal", "tiny-Q8_0.gguf" in err and "\r" not in err, err)

    code, out, err = whale(cache, "pull", "test-org/tiny-GGUF:Q2_K")
    files = snapshot_files(cache, "test-org/tiny-GGUF")
    split = ["sub/tiny-Q2_K-00001-of-00002.gguf", "sub/tiny-Q2_K-00002-of-00002.gguf"]
    check("a split GGUF in a subfolder: every shard, linked ../../../blobs/<sha256>",
          code == 0 and all(files.get(p) == ("../../../blobs/" + sha256(gguf[p]), gguf[p]) for p in split),
          f"{code} {sorted(files)} {err}")
    check("the split model's path is its first shard", last_line(out).endswith(split[0]), out)

    code, out, err = whale(cache, "pull", "test-org/tiny-GGUF")
    check("no tag: Q4_K_M", code == 0 and last_line(out).endswith("tiny-Q4_K_M.gguf"), out + err)

    LOG.clear()
    code, out, err = whale(cache, "pull", "test-org/tiny-GGUF:Q8_0")
    check("pulling a cached file again fetches no bytes", code == 0 and not LOG.of("storage"), str(LOG.of("storage")))

    code, out, err = whale(cache, "pull", "test-org/tiny-GGUF:Q5_K")
    check("a tag no file has: exit 1, one line listing the tags there are",
          code == 1 and "no GGUF matching :Q5_K" in err and "Q2_K, Q4_K_M, Q8_0" in err and len(err.strip().splitlines()) == 1,
          err)

    code, out, err = whale(cache, "list")
    check("whale list shows the repository with its tags", code == 0 and "test-org/tiny-GGUF" in out and "Q2_K Q4_K_M Q8_0" in out, out)

    code, out, err = whale(cache, "rm", "test-org/tiny-GGUF:Q2_K")
    files = snapshot_files(cache, "test-org/tiny-GGUF")
    check("rm REPO:TAG deletes that model's shards and blobs, keeps the others",
          code == 0 and sorted(files) == ["tiny-Q4_K_M.gguf", "tiny-Q8_0.gguf"]
          and blobs(cache, "test-org/tiny-GGUF") == sorted([sha256(TINY_GGUF), sha256(gguf["tiny-Q4_K_M.gguf"])]),
          f"{code} {out} {err} {sorted(files)}")
    code, out, err = whale(cache, "rm", "test-org/tiny-GGUF")
    check("rm REPO deletes the repository", code == 0 and not os.path.exists(folder(cache, "test-org/tiny-GGUF")), err)

    # --- a safetensors repository -----------------------------------------------------------------------------
    cache = new_cache("safetensors")
    LOG.clear()
    SETTINGS["storage_delay"] = 0.5  # the two shards overlap only if they are fetched at once
    code, out, err = whale(cache, "pull", "test-org/tiny-safetensors")
    SETTINGS["storage_delay"] = 0.0
    files = snapshot_files(cache, "test-org/tiny-safetensors")
    wanted = ["config.json", "generation_config.json", "model-00001-of-00002.safetensors",
              "model-00002-of-00002.safetensors", "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json"]
    check("safetensors: config, tokenizer, index and every shard it lists, nothing else",
          code == 0 and sorted(files) == wanted, f"{code} {sorted(files)} {err}")
    check("each file has its bytes; git files linked by their git hash",
          all(files[p][1] == SAFETENSORS_FILES[p] for p in files)
          and files["config.json"][0] == "../../blobs/" + git_sha1(SAFETENSORS_FILES["config.json"]))
    check("the shards download in parallel", LOG.most_active >= 2, f"at most {LOG.most_active} at once")
    check("the path is the snapshot directory", last_line(out) == os.path.join(
        folder(cache, "test-org/tiny-safetensors"), "snapshots", COMMITS["test-org/tiny-safetensors"]), out)
    code, out, err = whale(cache, "inspect", "test-org/tiny-safetensors", "--no-pull")
    check("whale inspect loads the pulled safetensors model by name", code == 0 and "qwen2" in out, out + err)

    hub_requests = LOG.of("hub")
    storage_requests = LOG.of("storage")
    check("the token goes to the hub only (none set here: no Authorization at all)",
          all("Authorization" not in h for _, _, _, h in hub_requests + storage_requests))

    # --- names wherever a model is taken: pulling first, --no-pull, offline ------------------------------------
    cache = new_cache("names")
    LOG.clear()
    code, out, err = whale(cache, "inspect", "test-org/tiny-GGUF:Q8_0", "--no-pull")
    check("--no-pull: a name not in the cache is an error naming whale pull, without a request",
          code == 1 and "not in the Hugging Face cache" in err and "whale pull" in err and not LOG.entries, err)
    code, out, err = whale(cache, "inspect", "test-org/tiny-GGUF:Q8_0", HF_HUB_OFFLINE="1")
    check("HF_HUB_OFFLINE=1: the same error, without a request", code == 1 and not LOG.entries, err)
    code, out, err = whale(cache, "pull", "test-org/tiny-GGUF:Q8_0", HF_HUB_OFFLINE="1")
    check("HF_HUB_OFFLINE=1 whale pull: an error saying what is cached, without a request",
          code == 1 and "HF_HUB_OFFLINE" in err and "empty" in err and not LOG.entries, err)
    code, out, err = whale(cache, "inspect", "test-org/tiny-GGUF:Q8_0")
    check("whale inspect org/name:TAG pulls, then runs", code == 0 and "qwen2" in out and LOG.of("storage"), out + err)
    code, out, err = whale(cache, "tokenize", "test-org/tiny-GGUF:Q8_0", "Hello", HF_HUB_OFFLINE="1")
    check("HF_HUB_OFFLINE=1 uses what is cached", code == 0 and out.strip(), out + err)

    # --- resuming: a killed pull, a dropped connection ---------------------------------------------------------
    cache = new_cache("resume")
    repo = "test-org/slow-GGUF"
    data = REPOS[repo]["model-Q4_K_M.gguf"]
    incomplete = os.path.join(folder(cache, repo), "blobs", sha256(data) + ".incomplete")
    process = subprocess.Popen([WHALE, "pull", repo], env=environment(cache), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and (not os.path.exists(incomplete) or os.path.getsize(incomplete) < (1 << 20)):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = os.path.getsize(incomplete) if os.path.exists(incomplete) else 0
    check("a killed pull leaves a partial blob and nothing in the snapshot",
          (1 << 20) <= partial < len(data) and not snapshot_files(cache, repo), f"partial {partial}")
    LOG.clear()
    SETTINGS["slow_bytes_per_second"] = 0
    code, out, err = whale(cache, "pull", repo)
    ranges = [h.get("Range") for _, method, _, h in LOG.of("storage") if method == "GET"]
    resumed_from = [int(r[len("bytes="):-1]) for r in ranges if r]
    check("the next pull resumes with a Range request from the partial size",
          code == 0 and resumed_from and resumed_from[0] >= partial and len(ranges) == 1, f"{ranges} partial {partial} {err}")
    check("the resumed file is complete and correct", snapshot_files(cache, repo).get("model-Q4_K_M.gguf", (0, 0))[1] == data
          and not os.path.exists(incomplete))

    repo = "test-org/dropping-GGUF"
    LOG.clear()
    code, out, err = whale(cache, "pull", repo)
    ranges = [h.get("Range") for _, method, _, h in LOG.of("storage") if method == "GET"]
    check("a connection dropped mid-file is resumed within the same pull",
          code == 0 and len(ranges) == 2 and ranges[0] is None and ranges[1] and int(ranges[1][6:-1]) >= (512 << 10)
          and snapshot_files(cache, repo)["model-Q4_K_M.gguf"][1] == REPOS[repo]["model-Q4_K_M.gguf"], f"{ranges} {err}")

    # --- corrupted bytes, errors ---------------------------------------------------------------------------------
    repo = "test-org/corrupt-GGUF"
    code, out, err = whale(cache, "pull", repo)
    check("corrupted bytes: exit 1 naming the SHA-256 mismatch; nothing in the snapshot, no blob, no partial file",
          code == 1 and "SHA-256" in err and not snapshot_files(cache, repo) and not blobs(cache, repo), f"{err} {blobs(cache, repo)}")

    code, out, err = whale(cache, "pull", "test-org/no-such-model")
    check("an unknown repository: exit 1, one line", code == 1 and "no such repository" in err
          and len(err.strip().splitlines()) == 1, err)
    code, out, err = whale(cache, "pull", "test-org/tiny-GGUF@v9")
    check("an unknown revision: exit 1", code == 1 and "no revision v9" in err, err)

    code, out, err = whale(cache, "pull", "test-org/gated-GGUF")
    check("a gated repository without a token: exit 1, saying to accept the licence and set HF_TOKEN",
          code == 1 and "gated" in err and "HF_TOKEN" in err and f"{ENDPOINT}/test-org/gated-GGUF" in err, err)
    LOG.clear()
    code, out, err = whale(cache, "pull", "test-org/gated-GGUF", HF_TOKEN=TOKEN)
    check("with HF_TOKEN it downloads", code == 0 and snapshot_files(cache, "test-org/gated-GGUF"), err)
    check("the token goes to the hub, never to the storage host",
          all(h.get("Authorization") == f"Bearer {TOKEN}" for _, _, _, h in LOG.of("hub"))
          and LOG.of("storage") and all("Authorization" not in h for _, _, _, h in LOG.of("storage")))
    token_file = os.path.join(WORK, "hf-home", "token")
    os.makedirs(os.path.dirname(token_file), exist_ok=True)
    with open(token_file, "w") as f:
        f.write(TOKEN + "\n")
    code, out, err = whale(new_cache("token-file"), "pull", "test-org/gated-GGUF")
    os.remove(token_file)
    check("the token file huggingface-cli login writes (HF_HOME/token) is read", code == 0, err)

    with socketserver.TCPServer(("127.0.0.1", 0), None) as closed:
        dead = closed.server_address[1]
    code, out, err = whale(cache, "pull", "test-org/tiny-GGUF", HF_ENDPOINT=f"http://127.0.0.1:{dead}")
    check("an unreachable hub: exit 1, naming offline mode and what is cached",
          code == 1 and "cannot reach" in err and "HF_HUB_OFFLINE=1" in err and "test-org/slow-GGUF" in err, err)

    LOG.clear()
    code, out, err = whale(cache, "pull", "test-org/huge-GGUF")
    check("not enough disk: exit 1 before any download", code == 1 and "free" in err and "HF_HUB_CACHE" in err
          and not LOG.of("storage"), err)

    # --- on a terminal: a progress bar --------------------------------------------------------------------------
    # `script` (util-linux, in every Debian) gives whale a terminal.
    check("script(1) is there to give whale a terminal", shutil.which("script") is not None)
    if shutil.which("script"):
        tty_cache = new_cache("tty")
        env = environment(tty_cache)
        run = subprocess.run(["script", "-qec", f"{WHALE} pull test-org/tiny-GGUF:Q8_0", "/dev/null"], env=env,
                             capture_output=True, timeout=120)
        shown = run.stdout.decode(errors="replace")
        check("on a terminal: a progress bar redrawn in place, with bytes, percentage and rate",
              run.returncode == 0 and "\r\x1b[K" in shown and "120.3 KiB / 120.3 KiB" in shown and "100%" in shown
              and "/s" in shown, repr(shown[-300:]))

    # --- huggingface_hub and whale share the cache --------------------------------------------------------------
    probe = """
import json, os, sys
from huggingface_hub import hf_hub_download, scan_cache_dir, snapshot_download
action = sys.argv[1]
if action == "find":
    path = hf_hub_download("test-org/tiny-safetensors", "model-00002-of-00002.safetensors", local_files_only=True)
    info = scan_cache_dir()
    repos = {r.repo_id: sorted(f.file_name for rev in r.revisions for f in rev.files) for r in info.repos}
    print(json.dumps({"path": path, "repos": repos, "warnings": [str(w) for w in info.warnings]}))
else:
    hf_hub_download("test-org/tiny-GGUF", "tiny-Q8_0.gguf")
    snapshot_download("test-org/tiny-safetensors", allow_patterns=["*.json", "*.safetensors"])
    print("{}")
"""
    cache = new_cache("safetensors")
    whale(cache, "pull", "test-org/tiny-safetensors")
    run = subprocess.run([sys.executable, "-c", probe, "find"], env=environment(cache, HF_HUB_OFFLINE="1"),
                         capture_output=True, text=True, timeout=120)
    found = json.loads(run.stdout) if run.returncode == 0 else {}
    check("huggingface_hub finds whale's download (hf_hub_download, local_files_only)",
          found.get("path") == os.path.join(folder(cache, "test-org/tiny-safetensors"), "snapshots",
                                            COMMITS["test-org/tiny-safetensors"], "model-00002-of-00002.safetensors"),
          run.stdout + run.stderr[-2000:])
    check("scan_cache_dir lists whale's files, without warnings",
          found.get("repos", {}).get("test-org/tiny-safetensors") == sorted(
              ["config.json", "generation_config.json", "model-00001-of-00002.safetensors",
               "model-00002-of-00002.safetensors", "model.safetensors.index.json", "tokenizer.json",
               "tokenizer_config.json"]) and not found.get("warnings"), str(found))

    cache = new_cache("written-by-huggingface-hub")
    run = subprocess.run([sys.executable, "-c", probe, "download"], env=environment(cache), capture_output=True,
                         text=True, timeout=300)
    check("huggingface_hub downloads from the local hub", run.returncode == 0, run.stderr[-2000:])
    LOG.clear()
    code, out, err = whale(cache, "inspect", "test-org/tiny-GGUF:Q8_0", HF_HUB_OFFLINE="1")
    check("whale runs a GGUF huggingface_hub downloaded, offline, without a request",
          code == 0 and "qwen2" in out and not LOG.entries, out + err)
    code, out, err = whale(cache, "inspect", "test-org/tiny-safetensors", HF_HUB_OFFLINE="1")
    check("and a safetensors model huggingface_hub downloaded", code == 0 and "qwen2" in out and not LOG.entries, out + err)
finally:
    hub.shutdown()
    storage.shutdown()
    shutil.rmtree(WORK, ignore_errors=True)

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
