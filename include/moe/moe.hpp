// moe/moe.hpp - everything: core, safetensors I/O, backend (CPU), routers, experts, layers,
// and the checkpoint loaders (hf::, ringmoe::load_moe_modal, rsunivlm::load_gmoe_ffn).
// Not included: moe/prune.hpp (pruning), vision/ and rs/ (vision encoders, remote sensing).
#pragma once

#include "moe/backend/cpu.hpp"
#include "moe/core.hpp"
#include "moe/expert.hpp"
#include "moe/io.hpp"
#include "moe/io/hf.hpp"
#include "moe/io/ringmoe.hpp"
#include "moe/io/rsunivlm.hpp"
#include "moe/layer.hpp"
#include "moe/router.hpp"
