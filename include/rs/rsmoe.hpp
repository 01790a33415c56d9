// rs/rsmoe.hpp - RS-MoE (arXiv 2411.01595): the released InstructBLIP parts (EVA ViT-g, ln_vision,
// the instruction-aware Q-Former, llm_proj, a LLaMA-family LLM) exactly as LAVIS computes them,
// and the MoE block the paper describes (an instruction router writing one prompt per expert LLM,
// LoRA or separate experts, an aggregator), from the library's parts. docs/rsmoe.md.
//
//   rs/rsmoe/config.hpp    RsMoeConfig (rsmoe.json), kEvalInstruction, default_experts()
//   rs/rsmoe/encoder.hpp   InstructBlipEncoder<W>, load_instructblip
//   rs/rsmoe/router.hpp    PromptRouter, TextRouter (sub-instructions), SoftRouter (soft prompts)
//   rs/rsmoe/experts.hpp   LlmExperts, LoraExperts<W> (one batch over a shared base), SeparateLlms<W>
//   rs/rsmoe/model.hpp     RsMoe<W, Router, Experts>, caption(), load_rsmoe
#pragma once

#include "rs/rsmoe/config.hpp"
#include "rs/rsmoe/encoder.hpp"
#include "rs/rsmoe/experts.hpp"
#include "rs/rsmoe/model.hpp"
#include "rs/rsmoe/router.hpp"
