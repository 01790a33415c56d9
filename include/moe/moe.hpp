// moe/moe.hpp - everything: core, backend (CPU), routers, experts, layers.
#pragma once

#include "moe/backend/backend.hpp"
#include "moe/backend/cpu.hpp"
#include "moe/core.hpp"
#include "moe/expert.hpp"
#include "moe/layer.hpp"
#include "moe/router.hpp"
