// moe/core.hpp - errors, dtypes, shapes, views and tensors, the routing plan, the execution layer.
#pragma once

#include "moe/core/dtype.hpp"
#include "moe/core/error.hpp"
#include "moe/core/parallel.hpp"
#include "moe/core/plan.hpp"
#include "moe/core/precision.hpp"
#include "moe/core/tensor.hpp"
#include "moe/core/utf8.hpp"
