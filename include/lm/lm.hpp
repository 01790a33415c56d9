// lm/lm.hpp - the language floor: tokenizers (Hugging Face tokenizer.json) and chat templates.
#pragma once

#include "lm/bpe.hpp"
#include "lm/chat.hpp"
#include "lm/pipeline.hpp"
#include "lm/regex.hpp"
#include "lm/tokenizer.hpp"
#include "lm/unicode.hpp"
#include "lm/vocab.hpp"
#include "lm/wordpiece.hpp"
