// rs/rsunivlm.hpp - RSUniVLM (docs/rsunivlm.md): configuration, the assembled model and its
// loader, prompts as the released demo builds them, random-weight model folders, the parsers
// of its box and mask answers.
#pragma once

#include "rs/rsunivlm/answers.hpp"
#include "rs/rsunivlm/config.hpp"
#include "rs/rsunivlm/model.hpp"
#include "rs/rsunivlm/prompt.hpp"
#include "rs/rsunivlm/random.hpp"
