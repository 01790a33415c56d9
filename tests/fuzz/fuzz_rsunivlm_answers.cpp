// libFuzzer target for RSUniVLM's answer parsers (include/rs/rsunivlm/answers.hpp).
//
// The whole input is one answer text, read as boxes (parse_boxes) and as a mask (parse_mask with
// the expected grids 24 x 24, 3 x 5 and 1 x 1). The parsers must accept any bytes without an
// exception and keep their invariants: every box comes from a "[...]" match (at most one per
// '['), its coordinates are non-negative numbers, to_pixels/clamp stay in range; a mask has
// 1..expected rows and columns, rows * cols cells, every cell a class index, classes[0] ==
// "others", at most 65 problems, a problem whenever the demo would fail, only the demo's label
// form when it would not, and the same grid for the ASCII upper-cased text (the demo lower-cases).
// upsample_mask at the grid's own size is the grid itself, and at small sizes holds only class
// indices. Memory stays bounded (-rss_limit_mb, -malloc_limit_mb): counts are never expanded.
//
// Build and run (clang; from the repository root):
//   cmake --preset fuzz && cmake --build --preset fuzz --target moe_fuzz_rsunivlm_answers
//   build/fuzz/tests/moe_fuzz_rsunivlm_answers -max_total_time=30 -timeout=2 -malloc_limit_mb=512 \
//       tests/fuzz/corpus/rsunivlm_answers
// (libFuzzer writes new inputs to the first corpus directory: give it a scratch one first to
// keep the checked-in seeds unchanged.) Seeds: tests/fuzz/corpus/rsunivlm_answers/, hand-written
// answers (the demo's examples, a 24 x 24 mask, a 3 x 5 grid, cut-off and malformed answers).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "rs/rsunivlm/answers.hpp"

namespace {

namespace ra = moe::rs::rsunivlm;

[[noreturn]] void finding(const char* what) {
    std::fprintf(stderr, "fuzz_rsunivlm_answers: oracle failed: %s\n", what);
    std::abort();
}

void check_boxes(std::string_view text) {
    const ra::BoxParse r = ra::parse_boxes(text);
    std::size_t brackets = 0;
    for (char c : text) brackets += c == '[';
    if (r.boxes.size() > brackets) finding("more boxes than '['");
    if (r.problems.size() > 65) finding("problem list not bounded");
    if (!r.demo_accepts && r.problems.empty()) finding("the demo fails but no problem is reported");
    for (const ra::Box& b : r.boxes) {
        for (double v : {b.x1, b.y1, b.x2, b.y2})
            if (!(v >= 0.0)) finding("a coordinate is negative or NaN");
        for (int size : {0, 1, 64, 256, 1000}) {
            const ra::PixelBox p = ra::to_pixels(b, size, size);
            const ra::PixelBox c = ra::clamp(p, size, size);
            for (int v : {c.x1, c.y1, c.x2, c.y2})
                if (v < 0 || v > (size > 0 ? size - 1 : 0)) finding("clamp out of the image");
            if (size > 0) {
                const ra::PercentBox q = ra::to_percent(p, size, size);
                for (int v : {q.x1, q.y1, q.x2, q.y2})
                    if (v < 0 || v > 100) finding("to_percent out of 0..100");
            }
        }
    }
}

void check_mask(std::string_view text, int er, int ec) {
    const ra::MaskParse m = ra::parse_mask(text, er, ec);
    if (m.rows < 1 || m.cols < 1 || m.rows > er || m.cols > ec) finding("grid size out of 1..expected");
    if (m.cells.size() != static_cast<std::size_t>(m.rows) * static_cast<std::size_t>(m.cols))
        finding("cells.size() != rows * cols");
    if (m.classes.empty() || m.classes[0] != "others") finding("classes[0] is not \"others\"");
    if (m.classes.size() > 65536) finding("more than 65536 classes");
    for (std::uint16_t c : m.cells)
        if (c >= m.classes.size()) finding("a cell outside the classes");
    if (m.problems.size() > 65) finding("problem list not bounded");
    if (!m.demo_accepts && m.problems.empty()) finding("the demo fails but no problem is reported");
    if (m.demo_accepts) {
        for (std::size_t i = 1; i < m.classes.size(); ++i) {
            const std::string& l = m.classes[i];
            if (l.empty() || l.front() == ' ' || l.back() == ' ' || l.find("  ") != std::string::npos ||
                l.find_first_not_of("abcdefghijklmnopqrstuvwxyz ") != std::string::npos)
                finding("the demo accepts a label its regex does not produce");
        }
    }

    std::string upper(text);
    for (char& c : upper)
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    const ra::MaskParse u = ra::parse_mask(upper, er, ec);
    if (u.rows != m.rows || u.cols != m.cols || u.cells != m.cells || u.classes != m.classes ||
        u.demo_accepts != m.demo_accepts)
        finding("upper case changes the mask");

    if (ra::upsample_mask(m, m.cols, m.rows) != m.cells) finding("upsampling to the grid's size is not the identity");
    for (auto [w, h] : {std::pair{1, 1}, std::pair{7, 5}, std::pair{30, 17}}) {
        for (ra::Nearest rule : {ra::Nearest::exact, ra::Nearest::opencv}) {
            const std::vector<std::uint16_t> map = ra::upsample_mask(m, w, h, rule);
            if (map.size() != static_cast<std::size_t>(w) * static_cast<std::size_t>(h)) finding("upsampled size");
            for (std::uint16_t c : map)
                if (c >= m.classes.size()) finding("an upsampled pixel outside the classes");
        }
    }
    const std::vector<std::uint8_t> fg = ra::foreground(m);
    for (std::size_t i = 0; i < fg.size(); ++i)
        if (fg[i] != (m.cells[i] != 0 ? 1 : 0)) finding("foreground is not class != 0");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    check_boxes(text);
    check_mask(text, 24, 24);
    check_mask(text, 3, 5);
    check_mask(text, 1, 1);
    return 0;
}
