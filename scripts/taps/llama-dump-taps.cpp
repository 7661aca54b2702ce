// llama-dump-taps: runs one forward pass of a GGUF model with llama.cpp and writes its intermediate tensors
// ("taps") in BlueWhale's tap dump format, for scripts/diff-taps.py.
//
//   llama-dump-taps -m MODEL.gguf --tokens 1,5,9 --out DIR [-t THREADS] [--verbose]
//
// Built by scripts/build-llama-cpp.sh against the llama.cpp it builds. The whole token list is one batch
// (one sequence, positions 0..T-1, every position an output), with an F32 KV cache and flash attention off
// (so the softmax probabilities exist as a graph node). The scheduler's eval callback (cb_eval) sees every
// graph node; the ones that map to a tap (table below) are copied to float32 as they are computed.
//
// Format written (DIR/manifest.json + one .npy per tap):
//   {"source": "llama.cpp", "model": "<path as given>", "tokens": [...],
//    "taps": [{"name": "attn_norm", "layer": 0, "shape": [T, 64], "file": "attn_norm.0.npy"}, ...]}
// float32, C order, outermost dimension first (ggml's ne is innermost first, so it is reversed here).
// Every per-token tap is written as [T, numel/T]: ggml keeps the token index outermost (ne[2] for the
// per-head 3-D tensors {d, heads, T}, ne[1] for 2-D ones), so reversing ne and merging the inner dims gives
// [T, heads*d]. The exception is attn_weights (kq_soft_max {n_kv, T, heads}) -> [heads, T, n_kv], cut to
// [heads, T, T] (the KV cache is fresh, so cells 0..T-1 hold the prompt; the padding cells are masked to 0).
//
// Mapping (llama.cpp names are "<name>-<layer>", set by cb(cur, name, il); a tensor named twice keeps the last
// name, and one name may be given to several tensors in a row, e.g. "q" to q_a, q_a_norm, q_b and its
// reshape: the capture of the LAST tensor computed under a name wins, unless an op is required):
//
//   all architectures
//     embd                    -> inp_embd       get_rows of token_embd (the "inp_embd" tensor is the unused
//                                               vector-input path)
//     attn_norm-N             -> attn_norm
//     attn_out-N              -> attn_out       llama only; otherwise the MUL_MAT whose weight is
//     MUL_MAT(blk.N.attn_output.weight)         blk.N.attn_output.weight (then the ADD of
//     ADD(., blk.N.attn_output.bias)            blk.N.attn_output.bias if there is one): o_proj output
//     ffn_inp-N               -> ffn_inp
//     ffn_norm-N              -> ffn_norm
//     ffn_out-N               -> ffn_out        the FFN output before the residual add (the add itself is
//                                               renamed l_out-N)
//     l_out-N                 -> l_out
//     result_norm             -> result_norm
//     result_output           -> result_output
//     kq_soft_max-N           -> attn_weights   [heads, T, T] after the cut above
//     ffn_moe_logits-N        -> router_logits
//     ffn_moe_probs-N         -> router_probs   sigmoid / softmax of the logits (before the selection bias)
//     ffn_moe_topk-N  (I32)   -> expert_ids     llama.cpp's order (argsort, descending biased score)
//     ffn_moe_weights-N, ffn_moe_weights_softmax-N, ffn_moe_weights_norm-N, ffn_moe_weights_scaled-N
//                             -> expert_weights the last one computed = after normalisation and scaling;
//                                               same order as expert_ids
//     ffn_moe_out-N           -> moe_out        sum of the weighted routed experts
//     ffn_shexp-N             -> shared_out
//   dense attention (every architecture except deepseek2)
//     Qcur-N (op ROPE)        -> q              {d, heads, T}; the earlier Qcur-N (mul_mat, bias add, reshape)
//     Kcur-N (op ROPE)        -> k              are skipped. NOTE: for llama GGUFs the converter permuted the
//                                               Q/K rows (interleaved RoPE pairs), see diff-taps.py
//                                               --llama-permute-qk
//     Vcur-N (last)           -> v
//   deepseek2 (MLA)
//     q-N (last: the reshape of the q_b / q_proj output)   -> q        [T, heads*(nope+rope)], before RoPE
//     q_pe-N (op ROPE)        -> q_rope         {rope, heads, T}; the pre-RoPE view is skipped
//     kv_cmpr-N (not a VIEW)  -> kv_latent      the kv_a_layernorm output; the pre-norm view is skipped
//     k_pe-N (op ROPE)        -> k_rope         {rope, 1, T}; the pre-RoPE view is skipped
//     (Qcur / Kcur / Vcur here are the absorbed MQA tensors, not our q / k / v: not dumped)
//     legacy deepseek2 GGUFs with a fused attn_kv_b (no MLA absorption): q_pe is never named there;
//     Qcur-N (op ROPE, {nope+rope, heads, T}, RoPE on the trailing rope dims only) -> q_rope, keeping the
//     last n_rot (deepseek2.rope.dimension_count) dims of each head
//
// Not dumped: anything the graph does not have under a mappable name.
#include "ggml-backend.h"
#include "ggml.h"
#include "llama.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <sys/stat.h>
#include <vector>

namespace {

struct Capture {
    std::string tap;
    int layer = -1;                  // -1: outside the layer stack
    std::vector<int64_t> shape;      // outermost first
    std::vector<float> data;
    std::string source;              // llama.cpp tensor name + op, for --verbose and the manifest
    long order = 0;                  // when it was (last) captured
};

struct State {
    bool mla = false;
    int64_t n_rot = 0;               // deepseek2: rope dims per head (for the legacy non-MLA Qcur)
    int n_tokens = 0;
    bool verbose = false;
    long counter = 0;
    std::map<std::pair<std::string, int>, Capture> captures;
    std::string error;
};

// Splits "name-12" into ("name", 12); names without a numeric suffix get layer -1.
void split_name(const char * full, std::string & base, int & layer) {
    std::string s(full);
    size_t dash = s.rfind('-');
    if (dash != std::string::npos && dash + 1 < s.size() &&
        std::all_of(s.begin() + dash + 1, s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        base = s.substr(0, dash);
        layer = std::atoi(s.c_str() + dash + 1);
    } else {
        base = s;
        layer = -1;
    }
}

// "blk.12.attn_output.weight" -> 12 when the suffix matches, else -1.
int weight_layer(const ggml_tensor * w, const char * suffix) {
    if (w == nullptr) return -1;
    int layer = -1;
    char rest[128] = {0};
    if (std::sscanf(w->name, "blk.%d.%127s", &layer, rest) == 2 && std::strcmp(rest, suffix) == 0) return layer;
    return -1;
}

// The tap a graph node stands for, or "" if none. Sets layer.
std::string tap_for(const ggml_tensor * t, const State & st, int & layer) {
    std::string base;
    split_name(t->name, base, layer);
    const ggml_op op = t->op;

    // o_proj output, found by its weight (deepseek2 / qwen2 do not name it)
    if (op == GGML_OP_MUL_MAT) {
        int l = weight_layer(t->src[0], "attn_output.weight");
        if (l >= 0) { layer = l; return "attn_out"; }
    }
    if (op == GGML_OP_ADD) {
        int l = weight_layer(t->src[1], "attn_output.bias");
        if (l >= 0) { layer = l; return "attn_out"; }
    }

    if (layer < 0) {
        if (base == "embd") return "inp_embd";
        if (base == "result_norm") return "result_norm";
        if (base == "result_output") return "result_output";
        return "";
    }
    static const std::map<std::string, std::string> common = {
        {"attn_norm", "attn_norm"},           {"attn_out", "attn_out"},
        {"ffn_inp", "ffn_inp"},               {"ffn_norm", "ffn_norm"},
        {"ffn_out", "ffn_out"},               {"l_out", "l_out"},
        {"kq_soft_max", "attn_weights"},      {"ffn_moe_logits", "router_logits"},
        {"ffn_moe_probs", "router_probs"},    {"ffn_moe_topk", "expert_ids"},
        {"ffn_moe_weights", "expert_weights"}, {"ffn_moe_weights_softmax", "expert_weights"},
        {"ffn_moe_weights_norm", "expert_weights"}, {"ffn_moe_weights_scaled", "expert_weights"},
        {"ffn_moe_out", "moe_out"},           {"ffn_shexp", "shared_out"},
    };
    auto it = common.find(base);
    if (it != common.end()) return it->second;

    if (st.mla) {
        if (base == "q") return "q";
        if (base == "q_pe" && op == GGML_OP_ROPE) return "q_rope";
        // legacy GGUFs with one attn_kv_b (no MLA absorption): RoPE runs on the whole q with an offset
        if (base == "Qcur" && op == GGML_OP_ROPE && st.n_rot > 0 && t->ne[0] > st.n_rot) return "q_rope";
        if (base == "kv_cmpr" && op != GGML_OP_VIEW) return "kv_latent";
        if (base == "k_pe" && op == GGML_OP_ROPE) return "k_rope";
    } else {
        if (base == "Qcur" && op == GGML_OP_ROPE) return "q";
        if (base == "Kcur" && op == GGML_OP_ROPE) return "k";
        if (base == "Vcur") return "v";
    }
    return "";
}

float element(const char * p, ggml_type type) {
    switch (type) {
        case GGML_TYPE_F32: { float v; std::memcpy(&v, p, 4); return v; }
        case GGML_TYPE_F16: { ggml_fp16_t v; std::memcpy(&v, p, 2); return ggml_fp16_to_fp32(v); }
        case GGML_TYPE_BF16: { ggml_bf16_t v; std::memcpy(&v, p, 2); return ggml_bf16_to_fp32(v); }
        case GGML_TYPE_I32: { int32_t v; std::memcpy(&v, p, 4); return (float) v; }
        default: return NAN;
    }
}

// Copies t (any strides) to float32 in C order of the reversed ne: index [i3][i2][i1][i0].
bool read_tensor(const ggml_tensor * t, std::vector<float> & out, std::string & err) {
    if (t->type != GGML_TYPE_F32 && t->type != GGML_TYPE_F16 && t->type != GGML_TYPE_BF16 &&
        t->type != GGML_TYPE_I32) {
        err = std::string("unsupported type ") + ggml_type_name(t->type);
        return false;
    }
    std::vector<char> host;
    const char * base = nullptr;
    if (t->buffer == nullptr || ggml_backend_buffer_is_host(t->buffer)) {
        base = (const char *) t->data;
    } else {
        if (!ggml_is_contiguous(t)) { err = "non-contiguous tensor in a device buffer"; return false; }
        host.resize(ggml_nbytes(t));
        ggml_backend_tensor_get(t, host.data(), 0, host.size());
        base = host.data();
    }
    if (base == nullptr) { err = "tensor has no data"; return false; }
    out.clear();
    out.reserve(ggml_nelements(t));
    for (int64_t i3 = 0; i3 < t->ne[3]; i3++)
        for (int64_t i2 = 0; i2 < t->ne[2]; i2++)
            for (int64_t i1 = 0; i1 < t->ne[1]; i1++)
                for (int64_t i0 = 0; i0 < t->ne[0]; i0++)
                    out.push_back(element(base + i0 * t->nb[0] + i1 * t->nb[1] + i2 * t->nb[2] + i3 * t->nb[3],
                                          t->type));
    return true;
}

bool eval_callback(ggml_tensor * t, bool ask, void * user_data) {
    State & st = *(State *) user_data;
    int layer = -1;
    const std::string tap = tap_for(t, st, layer);
    if (ask) {
        if (st.verbose) {
            std::fprintf(stderr, "node %-32s %-10s %-5s ne [%lld, %lld, %lld, %lld]%s%s\n", t->name,
                         ggml_op_name(t->op), ggml_type_name(t->type), (long long) t->ne[0], (long long) t->ne[1],
                         (long long) t->ne[2], (long long) t->ne[3], tap.empty() ? "" : "  -> ", tap.c_str());
        }
        return !tap.empty();
    }
    if (tap.empty()) return true;

    Capture c;
    c.tap = tap;
    c.layer = layer;
    c.source = std::string(t->name) + " (" + ggml_op_name(t->op) + ")";
    std::string err;
    if (!read_tensor(t, c.data, err)) {
        st.error = std::string("cannot read ") + t->name + ": " + err;
        return false;  // cancels the compute
    }
    const int64_t T = st.n_tokens;
    if (tap == "q_rope" && t->ne[0] > st.n_rot) {
        // {nope+rope, heads, T} with only the trailing rope dims rotated: keep those
        const int64_t d = t->ne[0], rows = (int64_t) c.data.size() / d;
        std::vector<float> cut;
        cut.reserve((size_t) (rows * st.n_rot));
        for (int64_t r = 0; r < rows; r++)
            cut.insert(cut.end(), c.data.begin() + r * d + (d - st.n_rot), c.data.begin() + (r + 1) * d);
        c.data.swap(cut);
    }
    const int64_t n = (int64_t) c.data.size();
    if (tap == "attn_weights") {
        // {n_kv, T, heads, 1} -> [heads, T, n_kv] -> [heads, T, T]
        const int64_t n_kv = t->ne[0], rows = t->ne[1], heads = t->ne[2] * t->ne[3];
        if (rows != T || n_kv < T) {
            st.error = std::string(t->name) + ": unexpected kq_soft_max shape";
            return false;
        }
        std::vector<float> cut((size_t) (heads * T * T));
        for (int64_t h = 0; h < heads; h++)
            for (int64_t i = 0; i < T; i++) {
                const float * row = c.data.data() + (h * T + i) * n_kv;
                std::copy(row, row + T, cut.begin() + (h * T + i) * T);
                for (int64_t j = T; j < n_kv; j++) {
                    if (row[j] != 0.0f) {
                        std::fprintf(stderr, "warning: %s: KV cell %lld beyond the prompt has weight %g\n",
                                     t->name, (long long) j, row[j]);
                        break;
                    }
                }
            }
        c.data.swap(cut);
        c.shape = {heads, T, T};
    } else {
        if (n % T != 0) {
            st.error = std::string(t->name) + ": element count is not a multiple of the token count";
            return false;
        }
        c.shape = {T, n / T};
    }
    c.order = st.counter++;
    st.captures[{tap, layer}] = std::move(c);  // the last tensor computed under a tap wins
    return true;
}

bool write_npy(const std::string & path, const Capture & c) {
    std::string shape = "(";
    for (size_t i = 0; i < c.shape.size(); i++) {
        shape += std::to_string(c.shape[i]);
        shape += (c.shape.size() == 1 || i + 1 < c.shape.size()) ? "," : "";
        if (i + 1 < c.shape.size()) shape += " ";
    }
    shape += ")";
    std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
    // magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of 64, ending '\n'
    size_t total = 10 + header.size() + 1;
    header.append((64 - total % 64) % 64, ' ');
    header += '\n';
    FILE * f = std::fopen(path.c_str(), "wb");
    if (!f) return false;
    const unsigned char magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    const uint16_t len = (uint16_t) header.size();
    const unsigned char len_le[2] = {(unsigned char) (len & 0xff), (unsigned char) (len >> 8)};
    bool ok = std::fwrite(magic, 1, 8, f) == 8 && std::fwrite(len_le, 1, 2, f) == 2 &&
              std::fwrite(header.data(), 1, header.size(), f) == header.size() &&
              std::fwrite(c.data.data(), sizeof(float), c.data.size(), f) == c.data.size();
    // the data is written in the machine's byte order; '<f4' assumes little-endian (x86-64, arm64)
    return std::fclose(f) == 0 && ok;
}

std::string json_string(const std::string & s) {
    std::string out = "\"";
    for (char ch : s) {
        if (ch == '"' || ch == '\\') { out += '\\'; out += ch; }
        else if ((unsigned char) ch < 0x20) { char buf[8]; std::snprintf(buf, sizeof buf, "\\u%04x", ch); out += buf; }
        else out += ch;
    }
    return out + "\"";
}

void usage(const char * argv0) {
    std::fprintf(stderr,
                 "usage: %s -m MODEL.gguf --tokens ID,ID,... --out DIR [-t THREADS] [--verbose]\n"
                 "  Runs the token ids through MODEL in one batch and writes the tap dump (manifest.json + .npy)\n"
                 "  to DIR. --verbose lists every graph node and the tap it maps to.\n",
                 argv0);
}

void quiet_log(ggml_log_level level, const char * text, void *) {
    if (level == GGML_LOG_LEVEL_ERROR || level == GGML_LOG_LEVEL_WARN) std::fputs(text, stderr);
}

}  // namespace

int main(int argc, char ** argv) {
    std::string model_path, out_dir, tokens_arg;
    int threads = 2;
    bool verbose = false;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto next = [&](const char * what) -> std::string {
            if (i + 1 >= argc) { std::fprintf(stderr, "error: %s needs a value\n", what); std::exit(2); }
            return argv[++i];
        };
        if (a == "-m" || a == "--model") model_path = next("-m");
        else if (a == "--tokens") tokens_arg = next("--tokens");
        else if (a == "--out" || a == "-o") out_dir = next("--out");
        else if (a == "-t" || a == "--threads") threads = std::atoi(next("-t").c_str());
        else if (a == "--verbose" || a == "-v") verbose = true;
        else if (a == "-h" || a == "--help") { usage(argv[0]); return 0; }
        else { std::fprintf(stderr, "error: unknown argument '%s'\n", a.c_str()); usage(argv[0]); return 2; }
    }
    if (model_path.empty() || out_dir.empty() || tokens_arg.empty()) { usage(argv[0]); return 2; }

    std::vector<llama_token> tokens;
    {
        size_t pos = 0;
        while (pos <= tokens_arg.size()) {
            size_t comma = tokens_arg.find(',', pos);
            std::string item = tokens_arg.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
            char * end = nullptr;
            errno = 0;
            long v = std::strtol(item.c_str(), &end, 10);
            if (item.empty() || *end != '\0' || errno != 0 || v < 0) {
                std::fprintf(stderr, "error: --tokens: '%s' is not a token id\n", item.c_str());
                return 2;
            }
            tokens.push_back((llama_token) v);
            if (comma == std::string::npos) break;
            pos = comma + 1;
        }
    }
    const int T = (int) tokens.size();

    if (!verbose) llama_log_set(quiet_log, nullptr);
    llama_backend_init();

    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    llama_model * model = llama_model_load_from_file(model_path.c_str(), mp);
    if (!model) { std::fprintf(stderr, "error: cannot load %s\n", model_path.c_str()); return 1; }
    const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    for (llama_token id : tokens) {
        if (id >= n_vocab) { std::fprintf(stderr, "error: token %d >= vocabulary size %d\n", id, n_vocab); return 2; }
    }
    char arch[128] = {0};
    llama_model_meta_val_str(model, "general.architecture", arch, sizeof arch);

    State st;
    st.mla = std::strcmp(arch, "deepseek2") == 0;
    if (st.mla) {
        char rot[32] = {0};
        if (llama_model_meta_val_str(model, "deepseek2.rope.dimension_count", rot, sizeof rot) > 0)
            st.n_rot = std::atoll(rot);
    }
    st.n_tokens = T;
    st.verbose = verbose;

    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t) std::max(T, 16);
    cp.n_batch = (uint32_t) std::max(T, 16);
    cp.n_ubatch = cp.n_batch;  // one ubatch: the whole prompt in one graph
    cp.n_seq_max = 1;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;  // keeps kq_soft_max in the graph
    cp.type_k = GGML_TYPE_F32;
    cp.type_v = GGML_TYPE_F32;
    cp.cb_eval = eval_callback;
    cp.cb_eval_user_data = &st;
    cp.no_perf = true;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) { std::fprintf(stderr, "error: cannot create a llama.cpp context\n"); return 1; }

    llama_batch batch = llama_batch_init(T, 0, 1);
    for (int i = 0; i < T; i++) {
        batch.token[i] = tokens[i];
        batch.pos[i] = i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = 1;
    }
    batch.n_tokens = T;
    // only the real pass is recorded (graph reservation does not compute)
    st.captures.clear();
    int rc = llama_decode(ctx, batch);
    if (!st.error.empty()) { std::fprintf(stderr, "error: %s\n", st.error.c_str()); return 1; }
    if (rc != 0) { std::fprintf(stderr, "error: llama_decode returned %d\n", rc); return 1; }

    // sanity: the captured logits are llama.cpp's output logits
    auto lo = st.captures.find({"result_output", -1});
    if (lo != st.captures.end()) {
        double worst = 0;
        for (int i = 0; i < T; i++) {
            const float * row = llama_get_logits_ith(ctx, i);
            for (int v = 0; v < n_vocab; v++)
                worst = std::max(worst, (double) std::fabs(row[v] - lo->second.data[(size_t) i * n_vocab + v]));
        }
        if (worst != 0.0) std::fprintf(stderr, "warning: result_output differs from llama_get_logits by %g\n", worst);
    }

    if (mkdir(out_dir.c_str(), 0777) != 0 && errno != EEXIST) {
        std::fprintf(stderr, "error: cannot create %s: %s\n", out_dir.c_str(), std::strerror(errno));
        return 1;
    }
    std::vector<const Capture *> list;
    for (auto & kv : st.captures) list.push_back(&kv.second);
    std::sort(list.begin(), list.end(), [](const Capture * a, const Capture * b) { return a->order < b->order; });

    std::string manifest = "{\n  \"source\": \"llama.cpp\",\n  \"model\": " + json_string(model_path) +
                           ",\n  \"architecture\": " + json_string(arch) + ",\n  \"tokens\": [";
    for (int i = 0; i < T; i++) manifest += (i ? ", " : "") + std::to_string(tokens[i]);
    manifest += "],\n  \"taps\": [\n";
    for (size_t i = 0; i < list.size(); i++) {
        const Capture & c = *list[i];
        std::string file = c.layer >= 0 ? c.tap + "." + std::to_string(c.layer) + ".npy" : c.tap + ".npy";
        if (!write_npy(out_dir + "/" + file, c)) {
            std::fprintf(stderr, "error: cannot write %s/%s\n", out_dir.c_str(), file.c_str());
            return 1;
        }
        std::string shape;
        for (size_t d = 0; d < c.shape.size(); d++) shape += (d ? ", " : "") + std::to_string(c.shape[d]);
        manifest += "    {\"name\": " + json_string(c.tap) + ", \"layer\": " +
                    (c.layer >= 0 ? std::to_string(c.layer) : std::string("null")) + ", \"shape\": [" + shape +
                    "], \"file\": " + json_string(file) + ", \"llama_cpp_tensor\": " + json_string(c.source) + "}" +
                    (i + 1 < list.size() ? ",\n" : "\n");
    }
    manifest += "  ]\n}\n";
    FILE * f = std::fopen((out_dir + "/manifest.json").c_str(), "w");
    if (!f || std::fputs(manifest.c_str(), f) < 0 || std::fclose(f) != 0) {
        std::fprintf(stderr, "error: cannot write %s/manifest.json\n", out_dir.c_str());
        return 1;
    }
    std::fprintf(stderr, "%s: %zu taps (%s, %d tokens) -> %s\n", argv[0], list.size(), arch, T, out_dir.c_str());

    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
