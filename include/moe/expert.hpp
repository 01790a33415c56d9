// moe/expert.hpp - the ExpertSet concept and the expert containers.
#pragma once

#include "moe/expert/concepts.hpp"
#include "moe/expert/ffn.hpp"
#include "moe/expert/grouped.hpp"
#include "moe/expert/linear_stack.hpp"
