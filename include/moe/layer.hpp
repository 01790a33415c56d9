// moe/layer.hpp - MoELayer and shared experts.
#pragma once

#include "moe/layer/hierarchical.hpp"
#include "moe/layer/moe_layer.hpp"
#include "moe/layer/shared.hpp"
