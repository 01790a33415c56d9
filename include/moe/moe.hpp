// moe/moe.hpp - everything: core, safetensors I/O and checkpoint access, backend (CPU), routers,
// experts, layers, and the model loaders (moe/loaders.hpp: hf::, rsunivlm::load_gmoe_ffn).
// Not included: moe/prune.hpp (pruning), vision/ and rs/ (vision encoders, remote sensing and
// RingMoE, whose Moe_modal loader is rs/ringmoe/moe_modal.hpp).
#pragma once

#include "moe/backend/cpu.hpp"
#include "moe/core.hpp"
#include "moe/expert.hpp"
#include "moe/io.hpp"
#include "moe/layer.hpp"
#include "moe/loaders.hpp"
#include "moe/router.hpp"
