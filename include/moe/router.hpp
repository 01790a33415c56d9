// moe/router.hpp - the Router concept and the routers (the plan they fill: moe/core/plan.hpp).
#pragma once

#include "moe/core/plan.hpp"
#include "moe/router/concepts.hpp"
#include "moe/router/expert_choice.hpp"
#include "moe/router/gate.hpp"
#include "moe/router/granularity.hpp"
#include "moe/router/instruction.hpp"
#include "moe/router/losses.hpp"
#include "moe/router/topk.hpp"
