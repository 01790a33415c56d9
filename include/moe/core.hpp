// moe/core.hpp - errors, dtypes, shapes, views and tensors.
#pragma once

#include "moe/core/dtype.hpp"
#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"
