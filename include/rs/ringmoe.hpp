// rs/ringmoe.hpp - RingMoE end to end: every header under include/rs/ringmoe/.
//
//   rs/ringmoe/config.hpp   configurations (full, single-modality, pruned, folded, tiny) and
//                           parameter counts
//   rs/ringmoe/heads.hpp    classification and segmentation heads
//   rs/ringmoe/model.hpp    the model (patch embeddings -> Swin encoder with the hierarchical MoE
//                           or a dense FFN in every block -> norm -> heads) and its loaders
//   rs/ringmoe/random.hpp   deterministic random-weight checkpoints
#pragma once

#include "rs/ringmoe/config.hpp"
#include "rs/ringmoe/heads.hpp"
#include "rs/ringmoe/model.hpp"
#include "rs/ringmoe/random.hpp"
