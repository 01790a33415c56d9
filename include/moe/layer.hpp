// moe/layer.hpp - routed groups, MoELayer, HierarchicalMoE, shared experts, layer concepts.
#pragma once

#include "moe/layer/concepts.hpp"
#include "moe/layer/hierarchical.hpp"
#include "moe/layer/moe_layer.hpp"
#include "moe/layer/routed_group.hpp"
#include "moe/layer/shared.hpp"
