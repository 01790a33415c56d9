// moe/expert.hpp - the ExpertSet concept, the expert containers and the dense FFN.
#pragma once

#include "moe/expert/concepts.hpp"
#include "moe/expert/dense_ffn.hpp"
#include "moe/expert/ffn.hpp"
#include "moe/expert/grouped.hpp"
#include "moe/expert/heterogeneous.hpp"
#include "moe/expert/linear_stack.hpp"
