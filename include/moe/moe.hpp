// moe/moe.hpp - everything: core, safetensors I/O, backend (CPU), routers, experts, layers.
#pragma once

#include "moe/backend/backend.hpp"
#include "moe/backend/cpu.hpp"
#include "moe/core.hpp"
#include "moe/expert.hpp"
#include "moe/io.hpp"
#include "moe/io/hf.hpp"
#include "moe/layer.hpp"
#include "moe/router.hpp"
