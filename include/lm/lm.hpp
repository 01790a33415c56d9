// lm/lm.hpp - the language side: tokenizers (Hugging Face tokenizer.json), chat templates and the
// decoder runtime (lm/decoder.hpp).
#pragma once

#include "lm/bpe.hpp"
#include "lm/chat.hpp"
#include "lm/decoder.hpp"
#include "lm/pipeline.hpp"
#include "lm/regex.hpp"
#include "lm/tokenizer.hpp"
#include "lm/unicode.hpp"
#include "lm/vocab.hpp"
#include "lm/wordpiece.hpp"
