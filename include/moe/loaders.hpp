// moe/loaders.hpp - umbrella header of the model loaders: MoE layers built from checkpoints by
// their real parameter names (Hugging Face blocks, RingMoE's Moe_modal, RSUniVLM's G-MoE) and
// the parts they are built from (moe/loaders/parts.hpp).
#pragma once

#include "moe/loaders/hf.hpp"
#include "moe/loaders/parts.hpp"
#include "moe/loaders/ringmoe.hpp"
#include "moe/loaders/rsunivlm.hpp"
