// moe/router.hpp - the routing plan, the Router concept and the routers.
#pragma once

#include "moe/router/concepts.hpp"
#include "moe/router/expert_choice.hpp"
#include "moe/router/gate.hpp"
#include "moe/router/granularity.hpp"
#include "moe/router/instruction.hpp"
#include "moe/router/losses.hpp"
#include "moe/router/plan.hpp"
#include "moe/router/topk.hpp"
