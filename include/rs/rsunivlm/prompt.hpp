// rs/rsunivlm/prompt.hpp - RSUniVLM's prompts as its released demo (app.py) builds them.
//
//   granularity_of(question)          [SEG] -> 2 (pixel), [VG] or [REF] -> 1 (region), else 0
//                                     (image-level: [CAP], [VQA], [CLS], [CCD]), first rule first
//   user_text(question, n_images)     "<image>\n" + question, "<image> <image>\n" + question for
//                                     two images (the demo's strings; more: "<image> " repeated)
//   chat_prompt(question, n_images)   LLaVA's qwen_1_5 template (lm::ChatML) around user_text,
//                                     ending with the open assistant turn
//   tokenize_with_images(tok, text)   LLaVA's tokenizer_image_token: the text cut at each
//                                     "<image>", each piece encoded on its own, kImageTokenIndex
//                                     between the pieces (a leading BOS kept once, as LLaVA does)
//   make_request(tok, question, images)  all of the above: a Request ready for RsUniVlm
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "lm/chat.hpp"
#include "lm/tokenizer.hpp"
#include "moe/router/granularity.hpp"
#include "rs/rsunivlm/config.hpp"
#include "rs/rsunivlm/model.hpp"

namespace moe::rs::rsunivlm {

/// The expert the demo routes a question to (GranularityRouter's released rule).
inline int granularity_of(std::string_view question) {
    return GranularityRouter(1, 3).granularity(question);
}

/// The user turn's text for n images, as app.py writes it.
inline std::string user_text(std::string_view question, int n_images) {
    check<ConfigError>(n_images >= 0, "rsunivlm::user_text", "negative image count ", n_images);
    std::string s;
    for (int i = 0; i < n_images; ++i) {
        if (i > 0) s += ' ';
        s += kImageToken;
    }
    if (n_images > 0) s += '\n';
    s += question;
    return s;
}

/// The whole prompt in the qwen_1_5 template (system prompt "You are a helpful assistant.").
inline std::string chat_prompt(std::string_view question, int n_images) {
    const std::vector<lm::ChatMessage> msgs{{"user", user_text(question, n_images)}};
    return lm::ChatML{}.format(msgs);
}

/// LLaVA's tokenizer_image_token: pieces between "<image>" encoded separately (with the
/// tokenizer's post-processor, as `tokenizer(chunk).input_ids`), kImageTokenIndex between them.
/// When the first piece starts with the BOS id, that BOS is kept once and dropped from the other
/// pieces (Qwen's tokenizer adds none).
inline std::vector<std::int32_t> tokenize_with_images(const lm::Tokenizer& tok, std::string_view text) {
    std::vector<std::vector<std::int32_t>> pieces;
    std::size_t at = 0;
    for (;;) {
        const std::size_t next = text.find(kImageToken, at);
        pieces.push_back(tok.encode(text.substr(at, next == std::string_view::npos ? std::string_view::npos : next - at)));
        if (next == std::string_view::npos) break;
        at = next + kImageToken.size();
    }
    std::vector<std::int32_t> ids;
    std::size_t offset = 0;
    const lm::SpecialToken* bos = tok.bos();
    if (!pieces[0].empty() && bos && bos->id && pieces[0][0] == *bos->id) {
        offset = 1;
        ids.push_back(pieces[0][0]);
    }
    // LLaVA: every element of insert_separator(chunks, [IMAGE_TOKEN_INDEX] * (offset + 1)) is
    // extended as x[offset:]: one placeholder between pieces, each piece without its first offset ids.
    for (std::size_t i = 0; i < pieces.size(); ++i) {
        if (i > 0) ids.push_back(kImageTokenIndex);
        const auto& p = pieces[i];
        ids.insert(ids.end(), p.begin() + static_cast<std::ptrdiff_t>(std::min(offset, p.size())), p.end());
    }
    return ids;
}

/// A request for `question` about `images` (pixels [3, S, S] each): chat prompt, ids with the
/// image placeholders, and the granularity from the question's task tag.
inline Request make_request(const lm::Tokenizer& tok, std::string_view question, std::vector<Tensor> images) {
    Request r;
    r.ids = tokenize_with_images(tok, chat_prompt(question, static_cast<int>(images.size())));
    r.images = std::move(images);
    r.granularity = granularity_of(question);
    return r;
}

}  // namespace moe::rs::rsunivlm
