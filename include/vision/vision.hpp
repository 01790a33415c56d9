// vision/vision.hpp - umbrella header of the vision encoders (see docs/vision.md).
#pragma once

#include "vision/attention.hpp"
#include "vision/block.hpp"
#include "vision/common.hpp"
#include "vision/loaders.hpp"
#include "vision/mlp.hpp"
#include "vision/patch_embed.hpp"
#include "vision/pos_embed.hpp"
#include "vision/preprocess.hpp"
#include "vision/qformer.hpp"
#include "vision/swin.hpp"
#include "vision/vit.hpp"
