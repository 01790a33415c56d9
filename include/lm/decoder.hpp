// lm/decoder.hpp - the decoder runtime: Qwen2 / LLaMA decoders with any FFN slot, KV cache,
// Hugging Face model folders (docs/lm.md, "Decoder runtime").
#pragma once

#include "lm/decoder/attention.hpp"
#include "lm/decoder/config.hpp"
#include "lm/decoder/ffn.hpp"
#include "lm/decoder/generate.hpp"
#include "lm/decoder/kv_cache.hpp"
#include "lm/decoder/load.hpp"
#include "lm/decoder/lora.hpp"
#include "lm/decoder/model.hpp"
#include "lm/decoder/rope.hpp"
#include "lm/decoder/sampling.hpp"
