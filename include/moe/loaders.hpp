// moe/loaders.hpp - umbrella header of the model loaders: MoE layers built from checkpoints by
// their real parameter names (Hugging Face blocks, RSUniVLM's G-MoE) and the parts they are
// built from (moe/loaders/parts.hpp). RingMoE's Moe_modal is rs/ringmoe/moe_modal.hpp.
#pragma once

#include "moe/loaders/hf.hpp"
#include "moe/loaders/parts.hpp"
#include "moe/loaders/rsunivlm.hpp"
