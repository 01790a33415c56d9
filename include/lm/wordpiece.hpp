// lm/wordpiece.hpp - the WordPiece model of tokenizer.json (BERT): greedy longest match.
//
// A word longer than max_input_chars_per_word code points is the unknown token; otherwise the
// longest vocabulary prefix is taken, then the longest "##"-prefixed continuation, and so on;
// a word with a remainder no entry matches is one unknown token (not a partial split). This is the
// reference's WordPieceTokenizer.encode.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "lm/unicode.hpp"
#include "lm/vocab.hpp"
#include "moe/core/error.hpp"

namespace moe::lm {

struct WordPieceOptions {
    std::string unk_token = "[UNK]";
    std::string continuing_subword_prefix = "##";
    std::size_t max_input_chars_per_word = 100;
};

/// Per-thread memory of the WordPiece model.
struct WordPieceScratch {
    std::string buf;
    std::vector<std::size_t> bounds;
};

class WordPiece {
public:
    WordPiece() = default;
    WordPiece(const Vocab& vocab, WordPieceOptions opt) : vocab_(&vocab), opt_(std::move(opt)) {
        const auto id = vocab.find(opt_.unk_token);
        check<FormatError>(id.has_value(), "tokenizer.json: model", "unk_token \"", opt_.unk_token,
                           "\" is not in the vocabulary");
        unk_ = *id;
    }

    const WordPieceOptions& options() const noexcept { return opt_; }
    TokenId unk_id() const noexcept { return unk_; }

    /// Appends the tokens of one word (UTF-8) to `out`.
    void encode(std::string_view word, std::vector<TokenId>& out, WordPieceScratch& s) const {
        auto& bounds_ = s.bounds;
        auto& buf = s.buf;
        bounds_.clear();  // code point boundaries
        for (std::size_t i = 0; i < word.size();) {
            bounds_.push_back(i);
            i += unicode::decode_utf8(word, i).len;
        }
        const std::size_t n = bounds_.size();
        bounds_.push_back(word.size());
        if (n > opt_.max_input_chars_per_word) {
            out.push_back(unk_);
            return;
        }
        const std::size_t mark = out.size();
        std::size_t start = 0;
        while (start < n) {
            std::size_t end = n;
            TokenId found = -1;
            while (start < end) {
                buf.clear();
                if (start > 0) buf += opt_.continuing_subword_prefix;
                buf.append(word.substr(bounds_[start], bounds_[end] - bounds_[start]));
                if (const auto id = vocab_->find(buf)) {
                    found = *id;
                    break;
                }
                --end;
            }
            if (found < 0) {
                out.resize(mark);
                out.push_back(unk_);
                return;
            }
            out.push_back(found);
            start = end;
        }
    }

private:
    const Vocab* vocab_ = nullptr;
    WordPieceOptions opt_;
    TokenId unk_ = -1;
};

}  // namespace moe::lm
