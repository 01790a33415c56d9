// rs/ringmoe.hpp - RingMoE end to end: every header under include/rs/ringmoe/.
//
//   rs/ringmoe/config.hpp   configurations (full, single-modality, pruned, folded, tiny),
//                           swin_config() and parameter counts
//   rs/ringmoe/names.hpp    the tensor names (one table for every reader and writer)
//   rs/ringmoe/moe_modal.hpp  the hierarchical MoE (Moe_modal) built from a checkpoint
//   rs/ringmoe/encoder.hpp  the Swin encoder built from a checkpoint (RingMoeSwin, DenseSwin)
//   rs/ringmoe/heads.hpp    classification and segmentation heads
//   rs/ringmoe/model.hpp    the model (patch embeddings -> Swin encoder with the hierarchical MoE
//                           or a dense FFN in every block -> norm -> heads) and its loaders
//   rs/ringmoe/random.hpp   deterministic random-weight checkpoints
//   rs/ringmoe/inputs.hpp   remote-sensing images -> per-modality model inputs
//   rs/ringmoe/simmim.hpp   the SimMIM pre-training objective
//   rs/ringmoe/checkpoint.hpp  encoder checkpoints of any deployment step (MindSpore names)
//   rs/ringmoe/chain.hpp    the deployment chain (one modality -> pruned -> SVD fold)
#pragma once

#include "rs/ringmoe/config.hpp"
#include "rs/ringmoe/names.hpp"
#include "rs/ringmoe/moe_modal.hpp"
#include "rs/ringmoe/encoder.hpp"
#include "rs/ringmoe/heads.hpp"
#include "rs/ringmoe/model.hpp"
#include "rs/ringmoe/random.hpp"
#include "rs/ringmoe/inputs.hpp"
#include "rs/ringmoe/simmim.hpp"
#include "rs/ringmoe/checkpoint.hpp"
#include "rs/ringmoe/chain.hpp"
#include "rs/ringmoe/fidelity.hpp"
