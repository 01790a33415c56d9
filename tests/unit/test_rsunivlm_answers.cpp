// Tests of rs/rsunivlm/answers.hpp: RSUniVLM's box and mask answers read the way its demo
// (app.py) reads them. Every expectation is derived by hand from the demo's Python (noted where
// Python's float arithmetic matters), never taken from this library's output.
#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "rs/rsunivlm/answers.hpp"

namespace moe_test_test_rsunivlm_answers {

namespace ra = moe::rs::rsunivlm;

bool mentions(const std::vector<std::string>& problems, std::string_view needle) {
    for (const auto& p : problems)
        if (p.find(needle) != std::string::npos) return true;
    return false;
}

void check_box(const ra::Box& b, double x1, double y1, double x2, double y2) {
    CHECK(b.x1 == x1);
    CHECK(b.y1 == y1);
    CHECK(b.x2 == x2);
    CHECK(b.y2 == y2);
}

void check_pixels(const ra::PixelBox& p, int x1, int y1, int x2, int y2) {
    CHECK(p.x1 == x1);
    CHECK(p.y1 == y1);
    CHECK(p.x2 == x2);
    CHECK(p.y2 == y2);
}

// n copies of `line`, each followed by '\n' (the last one too).
std::string lines(int n, std::string_view line) {
    std::string s;
    for (int i = 0; i < n; ++i) {
        s += line;
        s += '\n';
    }
    return s;
}

// The cells of a mask as labels, row-major.
std::vector<std::string> labels_of(const ra::MaskParse& m) {
    std::vector<std::string> out;
    for (auto c : m.cells) out.push_back(m.classes.at(c));
    return out;
}

void check_invariants(const ra::MaskParse& m) {
    REQUIRE(m.rows >= 1);
    REQUIRE(m.cols >= 1);
    REQUIRE(m.cells.size() == static_cast<std::size_t>(m.rows) * static_cast<std::size_t>(m.cols));
    REQUIRE(!m.classes.empty());
    CHECK(m.classes[0] == "others");
    for (auto c : m.cells) REQUIRE(c < m.classes.size());
}

TEST_CASE("rsunivlm task_of follows the demo's dispatch", "[rsunivlm][answers]") {
    CHECK(ra::task_of("[VG] Where is the windwill?") == ra::Task::boxes_in_answer);
    CHECK(ra::task_of("[REF] what is [1, 20, 9, 30]?") == ra::Task::boxes_in_question);
    CHECK(ra::task_of("[SEG] water.") == ra::Task::mask);
    CHECK(ra::task_of("[CAP] Describe this image briefly.") == ra::Task::text);
    CHECK(ra::task_of("[CCD] Please briefly describe the changes") == ra::Task::text);
    CHECK(ra::task_of("how many?") == ra::Task::none);
    CHECK(ra::task_of("[SEG] [VG] both") == ra::Task::mask);           // [SEG] is tested last and wins
    CHECK(ra::task_of("[VQA] what is REF?") == ra::Task::text);        // text tags come first
    CHECK(ra::task_of("[VG] REF") == ra::Task::boxes_in_answer);       // [VG] before REF
    CHECK(ra::task_of("PREFIX") == ra::Task::boxes_in_question);       // the bare substring "REF"
    CHECK(ra::task_of("[seg] lower case") == ra::Task::none);          // case-sensitive
}

TEST_CASE("rsunivlm parse_boxes: the demo's examples", "[rsunivlm][answers]") {
    const auto vg = ra::parse_boxes("[45, 13, 49, 21]");
    REQUIRE(vg.boxes.size() == 1);
    check_box(vg.boxes[0], 45, 13, 49, 21);
    CHECK(vg.problems.empty());
    CHECK(vg.demo_accepts);

    const auto ref = ra::parse_boxes("[REF] what is [1, 20, 9, 30]?");  // "[REF]" itself is no match
    REQUIRE(ref.boxes.size() == 1);
    check_box(ref.boxes[0], 1, 20, 9, 30);
    CHECK(ref.problems.empty());
    CHECK(ref.demo_accepts);
}

TEST_CASE("rsunivlm parse_boxes: several boxes, floats, spaces and text between", "[rsunivlm][answers]") {
    const auto r = ra::parse_boxes("two: [10, 20, 30, 40] and [50.5,60, 70 ,80.25], done [ 1 , 2,3 ,4 ]");
    REQUIRE(r.boxes.size() == 3);
    check_box(r.boxes[0], 10, 20, 30, 40);
    check_box(r.boxes[1], 50.5, 60, 70, 80.25);
    check_box(r.boxes[2], 1, 2, 3, 4);
    CHECK(r.problems.empty());
    CHECK(r.demo_accepts);

    const auto f = ra::parse_boxes("[45., .5, 4.5, 007]");  // float("45.") == 45, float(".5") == 0.5
    REQUIRE(f.boxes.size() == 1);
    check_box(f.boxes[0], 45, 0.5, 4.5, 7);
    CHECK(f.demo_accepts);

    // '[' inside a would-be match: the scan restarts at it; "[[" is no match but its inner one is.
    const auto n = ra::parse_boxes("[[1, 2, 3, 4]] [5, [6, 7, 8, 9]");
    REQUIRE(n.boxes.size() == 2);
    check_box(n.boxes[0], 1, 2, 3, 4);
    check_box(n.boxes[1], 6, 7, 8, 9);
}

TEST_CASE("rsunivlm parse_boxes: texts the demo's regex does not match", "[rsunivlm][answers]") {
    for (const char* t : {"", "no box here", "[1, 2, 3, 4a]", "[-1, 2, 3, 4]", "[]", "[1,\n2, 3, 4]", "(1, 2, 3, 4)",
                          "[1, 2, 3, 4", "1, 2, 3, 4]", "[1e2, 2, 3, 4]"}) {
        INFO(t);
        const auto r = ra::parse_boxes(t);
        CHECK(r.boxes.empty());
        CHECK(r.problems.empty());
        CHECK(r.demo_accepts);
    }
}

TEST_CASE("rsunivlm parse_boxes: more or fewer than 4 numbers", "[rsunivlm][answers]") {
    const auto more = ra::parse_boxes("[1, 2, 3, 4, 5, 6]");
    REQUIRE(more.boxes.size() == 1);
    check_box(more.boxes[0], 1, 2, 3, 4);  // the demo pops from the end
    CHECK(more.problems.size() == 1);
    CHECK(mentions(more.problems, "6 numbers"));
    CHECK(more.demo_accepts);

    const auto fewer = ra::parse_boxes("[1, 2, 3] [7] [10, 20, 30, 40]");
    REQUIRE(fewer.boxes.size() == 1);
    check_box(fewer.boxes[0], 10, 20, 30, 40);
    CHECK(fewer.problems.size() == 2);
    CHECK(mentions(fewer.problems, "match 1"));
    CHECK(mentions(fewer.problems, "match 2"));
    CHECK(fewer.demo_accepts);  // the demo drops them silently
}

TEST_CASE("rsunivlm parse_boxes: pieces that are not Python floats", "[rsunivlm][answers]") {
    // float() raises on each of these; the demo then draws nothing at all.
    for (const char* t : {"[1.2.3, 4, 5, 6]", "[1, 2, 3, 4,]", "[1 2, 3, 4, 5]", "[ ]", "[.]", "[1,,2,3,4]", "[,]",
                          "[1, 2, 3, . ]"}) {
        INFO(t);
        const auto r = ra::parse_boxes(t);
        CHECK(r.boxes.empty());
        CHECK(r.problems.size() == 1);
        CHECK(!r.demo_accepts);
    }
    // We keep the other boxes.
    const auto r = ra::parse_boxes("[10, 20, 30, 40] [1.2.3, 4, 5, 6] [50, 60, 70, 80]");
    REQUIRE(r.boxes.size() == 2);
    check_box(r.boxes[0], 10, 20, 30, 40);
    check_box(r.boxes[1], 50, 60, 70, 80);
    CHECK(mentions(r.problems, "match 2"));
    CHECK(mentions(r.problems, "'1.2.3'"));
    CHECK(!r.demo_accepts);
}

TEST_CASE("rsunivlm parse_boxes: coordinates outside 0..100 and too many boxes", "[rsunivlm][answers]") {
    const auto edge = ra::parse_boxes("[0, 0, 100, 100.0]");
    REQUIRE(edge.boxes.size() == 1);
    CHECK(edge.problems.empty());

    const auto out = ra::parse_boxes("[10, 20, 130, 40]");
    REQUIRE(out.boxes.size() == 1);
    check_box(out.boxes[0], 10, 20, 130, 40);
    CHECK(mentions(out.problems, "outside 0..100"));
    CHECK(out.demo_accepts);  // the demo draws it (off the image)

    // 400 digits: float() gives inf, and the demo's int(inf) raises.
    std::string huge = "[1, 2, 3, ";
    huge += std::string(400, '9');
    huge += "]";
    const auto inf = ra::parse_boxes(huge);
    REQUIRE(inf.boxes.size() == 1);
    CHECK(inf.boxes[0].y2 > 1e308);
    CHECK(!inf.demo_accepts);

    std::string six, seven;
    for (int i = 0; i < 6; ++i) six += "[1, 2, 3, 4] ";
    seven = six;
    seven += "[5, 6, 7, 8]";
    CHECK(ra::parse_boxes(six).demo_accepts);
    const auto r7 = ra::parse_boxes(seven);
    CHECK(r7.boxes.size() == 7);
    CHECK(!r7.demo_accepts);  // colorsmap[6] raises IndexError
}

TEST_CASE("rsunivlm to_pixels, clamp, to_percent and format_box", "[rsunivlm][answers]") {
    const ra::Box b{45, 13, 49, 21};
    // 0.45 * 256 = 115.2, 0.13 * 256 = 33.28, 0.49 * 256 = 125.44, 0.21 * 256 = 53.76
    check_pixels(ra::to_pixels(b, 256, 256), 115, 33, 125, 53);
    // 0.45 * 64 = 28.8, 0.13 * 64 = 8.32, 0.49 * 64 = 31.36, 0.21 * 64 = 13.44
    check_pixels(ra::to_pixels(b, 64, 64), 28, 8, 31, 13);
    // 640 x 480: 0.45 * 640 = 288, 0.13 * 480 = 62.4, 0.49 * 640 = 313.6, 0.21 * 480 = 100.8
    check_pixels(ra::to_pixels(b, 640, 480), 288, 62, 313, 100);
    // Python: 29 / 100 * 100 == 28.999999999999996 and 57 / 100 * 100 == 56.99999999999999.
    check_pixels(ra::to_pixels(ra::Box{29, 57, 100, 0}, 100, 100), 28, 56, 100, 0);
    // 0.505 * 64 = 32.32, 0.999 * 64 = 63.936
    check_pixels(ra::to_pixels(ra::Box{50.5, 99.9, 100, 100}, 64, 64), 32, 63, 64, 64);
    // Huge coordinates saturate instead of overflowing.
    CHECK(ra::to_pixels(ra::Box{1e300, 0, 0, 0}, 256, 256).x1 == 2147483647);

    check_pixels(ra::clamp(ra::PixelBox{-3, 256, 300, 10}, 256, 256), 0, 255, 255, 10);
    check_pixels(ra::clamp(ra::PixelBox{5, 5, 5, 5}, 0, 0), 0, 0, 0, 0);

    // 100 * 115 / 256 = 44.92 -> 45, 33 -> 12.89 -> 13, 125 -> 48.83 -> 49, 53 -> 20.70 -> 21
    CHECK(ra::format_box(ra::PixelBox{115, 33, 125, 53}, 256, 256) == "[45, 13, 49, 21]");
    // halves round up: 1 of 200 is 0.5% -> 1; 128 of 256 is 50%; clamped: -5 -> 0, 300 -> 100
    const auto p = ra::to_percent(ra::PixelBox{1, 128, -5, 300}, 200, 256);
    CHECK(p.x1 == 1);
    CHECK(p.y1 == 50);
    CHECK(p.x2 == 0);
    CHECK(p.y2 == 100);
    CHECK(ra::format_box(ra::PercentBox{1, 20, 9, 30}) == "[1, 20, 9, 30]");
    CHECK_THROWS_AS(ra::to_percent(ra::PixelBox{}, 0, 10), moe::ConfigError);

    // A region prompt written by format_box is read back by parse_boxes.
    std::string prompt = "[REF] what is ";
    prompt += ra::format_box(ra::PercentBox{1, 20, 9, 30});
    prompt += "?";
    const auto back = ra::parse_boxes(prompt);
    REQUIRE(back.boxes.size() == 1);
    check_box(back.boxes[0], 1, 20, 9, 30);
}

TEST_CASE("rsunivlm parse_mask: a 24 x 24 answer with two classes, upper case", "[rsunivlm][answers]") {
    // Rows 1-12 all others; rows 13-24: 10 others, 4 water, 10 others.
    for (bool upper : {false, true}) {
        const std::string text = upper ? lines(12, "OTHERS*24") + lines(12, "Others*10, WATER*4, others*10")
                                       : lines(12, "others*24") + lines(12, "others*10, water*4, others*10");
        const auto m = ra::parse_mask(text);
        check_invariants(m);
        CHECK(m.rows == 24);
        CHECK(m.cols == 24);
        REQUIRE(m.classes == std::vector<std::string>{"others", "water"});
        CHECK(m.problems.empty());
        CHECK(m.demo_accepts);
        for (int r = 0; r < 24; ++r)
            for (int c = 0; c < 24; ++c) {
                const bool water = r >= 12 && c >= 10 && c < 14;
                REQUIRE(m.cells[static_cast<std::size_t>(r * 24 + c)] == (water ? 1 : 0));
            }
        const auto fg = ra::foreground(m);
        REQUIRE(fg.size() == 576);
        CHECK(fg[12 * 24 + 10] == 1);
        CHECK(fg[12 * 24 + 9] == 0);
    }
}

TEST_CASE("rsunivlm parse_mask: multi-word labels and a 3 x 5 grid", "[rsunivlm][answers]") {
    const std::string text = "bare land*3, others*2\nothers*5\nlow vegetation*1, bare land*4";
    const auto m = ra::parse_mask(text);  // the demo takes any consistent grid
    check_invariants(m);
    CHECK(m.rows == 3);
    CHECK(m.cols == 5);
    CHECK(m.demo_accepts);
    REQUIRE(m.classes == std::vector<std::string>{"others", "bare land", "low vegetation"});
    CHECK(m.cells == std::vector<std::uint16_t>{1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 2, 1, 1, 1, 1});
    CHECK(m.problems.size() == 1);  // the shape differs from the expected 24 x 24
    CHECK(mentions(m.problems, "3 x 5"));

    const auto exact = ra::parse_mask(text, 3, 5);
    CHECK(exact.problems.empty());
    CHECK(exact.cells == m.cells);
}

TEST_CASE("rsunivlm parse_mask: whitespace the demo tolerates", "[rsunivlm][answers]") {
    // strip() of the text, "\r" before "\n", spaces around labels and counts, Python int forms.
    const auto m = ra::parse_mask("\n\n others*3\r\n water *+1,  others*0_2 \n\n", 2, 3);
    check_invariants(m);
    CHECK(m.rows == 2);
    CHECK(m.cols == 3);
    CHECK(m.demo_accepts);
    CHECK(m.problems.empty());
    CHECK(labels_of(m) == std::vector<std::string>{"others", "others", "others", "water", "others", "others"});
}

TEST_CASE("rsunivlm parse_mask: empty and cut-off answers", "[rsunivlm][answers]") {
    for (const char* t : {"", "  \n \t "}) {
        const auto m = ra::parse_mask(t);
        check_invariants(m);
        CHECK(m.rows == 24);
        CHECK(m.cols == 24);
        CHECK(m.classes.size() == 1);
        CHECK(!m.demo_accepts);
        CHECK(mentions(m.problems, "empty answer"));
    }

    // The last row stops after 10 cells: padded; the demo fails (rows of different lengths).
    const auto cut = ra::parse_mask(lines(23, "others*24") + "water*10");
    check_invariants(cut);
    CHECK(cut.rows == 24);
    CHECK(cut.cols == 24);
    CHECK(!cut.demo_accepts);
    CHECK(mentions(cut.problems, "row 24: 10 cells"));
    for (int c = 0; c < 24; ++c) CHECK(cut.cells[static_cast<std::size_t>(23 * 24 + c)] == (c < 10 ? 1 : 0));

    // Cut inside a piece: the piece without '*' (or without a count) is skipped.
    for (const char* tail : {"water*10, oth", "water*10, others*"}) {
        const auto m = ra::parse_mask(lines(23, "others*24") + tail);
        check_invariants(m);
        CHECK(!m.demo_accepts);
        CHECK(mentions(m.problems, "row 24: piece"));
        CHECK(mentions(m.problems, "row 24: 10 cells"));
        CHECK(m.cells[23 * 24 + 9] == 1);
        CHECK(m.cells[23 * 24 + 10] == 0);
    }

    // 20 full rows and a short 21st: the expected 24 x 24, rows 22-24 filled with others.
    const auto missing = ra::parse_mask(lines(20, "water*24") + "water*3");
    check_invariants(missing);
    CHECK(missing.rows == 24);
    CHECK(!missing.demo_accepts);
    CHECK(mentions(missing.problems, "3 of 24 rows missing"));
    CHECK(missing.cells[20 * 24 + 2] == 1);
    CHECK(missing.cells[20 * 24 + 3] == 0);
    CHECK(missing.cells[21 * 24] == 0);
    CHECK(missing.cells[23 * 24 + 23] == 0);
}

TEST_CASE("rsunivlm parse_mask: grids of another size", "[rsunivlm][answers]") {
    // 20 complete rows: the demo draws a 20 x 24 grid over the whole image, and so do we.
    const auto twenty = ra::parse_mask(lines(20, "others*24"));
    check_invariants(twenty);
    CHECK(twenty.rows == 20);
    CHECK(twenty.cols == 24);
    CHECK(twenty.demo_accepts);
    CHECK(mentions(twenty.problems, "20 x 24"));

    // 30 x 30: accepted by the demo, cut to the expected 24 x 24 here.
    const auto big = ra::parse_mask(lines(30, "water*20, others*10"));
    check_invariants(big);
    CHECK(big.rows == 24);
    CHECK(big.cols == 24);
    CHECK(big.demo_accepts);
    CHECK(mentions(big.problems, "cut to 24 x 24"));
    CHECK(big.cells[19] == 1);
    CHECK(big.cells[20] == 0);

    // Inconsistent with extra rows: the expected shape, rows beyond 24 dropped, a wide row cut.
    const auto extra = ra::parse_mask(lines(4, "others*24").append("water*30\n").append(lines(21, "others*24")).append("water*3"));
    check_invariants(extra);
    CHECK(extra.rows == 24);
    CHECK(!extra.demo_accepts);
    CHECK(mentions(extra.problems, "row 5: 30 cells, expected 24; cut"));
    CHECK(mentions(extra.problems, "3 rows beyond the expected 24 dropped"));
    for (int c = 0; c < 24; ++c) CHECK(extra.cells[static_cast<std::size_t>(4 * 24 + c)] == 1);
}

TEST_CASE("rsunivlm parse_mask: counts", "[rsunivlm][answers]") {
    // A negative count contributes nothing, in the demo too ([label] * -3 == []).
    const auto neg = ra::parse_mask("water*-3, others*24", 1, 24);
    check_invariants(neg);
    CHECK(neg.demo_accepts);
    CHECK(mentions(neg.problems, "negative count"));
    CHECK(neg.classes.size() == 1);

    // Huge counts are never expanded; past OpenCV's int the demo fails.
    const auto huge = ra::parse_mask("water*99999999999999999999", 2, 3);
    check_invariants(huge);
    CHECK(huge.rows == 1);
    CHECK(huge.cols == 3);
    CHECK(!huge.demo_accepts);
    CHECK(huge.cells == std::vector<std::uint16_t>{1, 1, 1});

    // A consistent 2 x 2000000 grid: the demo draws it; we keep the first 4 columns.
    const auto wide = ra::parse_mask("water*1000000, others*1000000\nothers*2000000", 2, 4);
    check_invariants(wide);
    CHECK(wide.demo_accepts);
    CHECK(wide.cells == std::vector<std::uint16_t>{1, 1, 1, 1, 0, 0, 0, 0});

    // Python 3.11's int() refuses more than 4300 digits, even for a count of -1.
    std::string long_neg = "water*-";
    long_neg += std::string(4300, '0');
    long_neg += "1, others*3";
    const auto ln = ra::parse_mask(long_neg, 1, 3);
    CHECK(!ln.demo_accepts);
    CHECK(ln.cells == std::vector<std::uint16_t>{0, 0, 0});

    // Not integers to Python: read by their leading integer (or skipped without one).
    struct Case {
        const char* text;
        std::vector<std::uint16_t> cells;
    };
    for (const Case& c : {Case{"water*2.5, others*1", {1, 1, 0}}, Case{"water*2,others*1, others*1", {1, 1, 0}},
                          Case{"water*1*2, others*2", {1, 0, 0}}, Case{"water*1__2, others*2", {1, 0, 0}},
                          Case{"water*2_, others*1", {1, 1, 0}}, Case{"water*x, others*3", {0, 0, 0}},
                          Case{"water*, others*3", {0, 0, 0}}, Case{"water 3, others*3", {0, 0, 0}}}) {
        INFO(c.text);
        const auto m = ra::parse_mask(c.text, 1, 3);
        check_invariants(m);
        CHECK(!m.demo_accepts);
        CHECK(!m.problems.empty());
        CHECK(m.cells == c.cells);
    }
}

TEST_CASE("rsunivlm parse_mask: labels the demo's regex does not produce", "[rsunivlm][answers]") {
    for (const char* t : {"wat3r*3", "sea_ice*3", "big  water*3", "water.*3", "caf\xc3\xa9*3"}) {
        INFO(t);
        const auto m = ra::parse_mask(t, 1, 3);
        check_invariants(m);
        CHECK(!m.demo_accepts);  // KeyError in label_mapping
        REQUIRE(m.classes.size() == 2);
        CHECK(m.cells == std::vector<std::uint16_t>{1, 1, 1});  // still a class of its own
    }
    const auto empty_label = ra::parse_mask("*2, water*1", 1, 3);
    check_invariants(empty_label);
    CHECK(!empty_label.demo_accepts);
    CHECK(labels_of(empty_label) == std::vector<std::string>{"others", "others", "water"});

    // numpy drops a label's trailing NULs before strip(): "water \0" is "water".
    const auto nul = ra::parse_mask(std::string("water \0*3", 9), 1, 3);
    CHECK(nul.demo_accepts);
    CHECK(nul.classes == std::vector<std::string>{"others", "water"});
    CHECK(!ra::parse_mask(std::string("water\0 *3", 9), 1, 3).demo_accepts);  // NUL not trailing

    // A bad label with count 0 is never looked up: the demo accepts.
    const auto zero = ra::parse_mask("wat3r*0, others*3", 1, 3);
    CHECK(zero.demo_accepts);
    CHECK(zero.classes.size() == 1);

    // A blank line between rows fails the demo; we skip it.
    const auto blank = ra::parse_mask("others*3\n\nwater*3", 2, 3);
    check_invariants(blank);
    CHECK(!blank.demo_accepts);
    CHECK(mentions(blank.problems, "row 2: empty line"));
    CHECK(blank.rows == 2);
    CHECK(labels_of(blank) == std::vector<std::string>{"others", "others", "others", "water", "water", "water"});

    // No cells at all (counts 0): the demo's empty image fails in OpenCV.
    const auto none = ra::parse_mask("others*0", 2, 2);
    check_invariants(none);
    CHECK(!none.demo_accepts);

    CHECK_THROWS_AS(ra::parse_mask("others*1", 0, 24), moe::ConfigError);
    CHECK_THROWS_AS(ra::parse_mask("others*1", 24, 100000), moe::ConfigError);
}

TEST_CASE("rsunivlm upsample_mask: the nearest-neighbour map", "[rsunivlm][answers]") {
    for (auto [h, w] : {std::pair{24, 24}, std::pair{3, 5}, std::pair{7, 2}}) {
        ra::MaskParse m;
        m.rows = h;
        m.cols = w;
        m.classes = {"others"};
        for (int i = 0; i < h * w; ++i) m.cells.push_back(static_cast<std::uint16_t>(i));  // cell id
        for (auto [W, H] : {std::pair{256, 256}, std::pair{64, 64}, std::pair{100, 37}, std::pair{24, 24},
                            std::pair{13, 50}, std::pair{1, 1}, std::pair{500, 333}, std::pair{26, 52}}) {
            INFO("grid " << h << " x " << w << ", image " << W << " x " << H);
            const auto map = ra::upsample_mask(m, W, H);
            REQUIRE(map.size() == static_cast<std::size_t>(W) * static_cast<std::size_t>(H));
            // Independently: output column x shows grid column c exactly when
            // c * W <= x * w < (c + 1) * W (the 20-pixel block c spans [20c, 20c + 20) of the
            // 20w-pixel block image, and pixel x samples 20w * x / W of it).
            for (int y = 0; y < H; ++y)
                for (int x = 0; x < W; ++x) {
                    const int id = map[static_cast<std::size_t>(y * W + x)];
                    const int r = id / w, c = id % w;
                    REQUIRE(r * H <= y * h);
                    REQUIRE(y * h < (r + 1) * H);
                    REQUIRE(c * W <= x * w);
                    REQUIRE(x * w < (c + 1) * W);
                }
        }
    }
}

TEST_CASE("rsunivlm upsample_mask: OpenCV's double arithmetic and the errors", "[rsunivlm][answers]") {
    ra::MaskParse m;
    m.rows = 1;
    m.cols = 24;
    m.classes = {"others"};
    for (int i = 0; i < 24; ++i) m.cells.push_back(static_cast<std::uint16_t>(i));
    // Width 26: 13 * 24 / 26 is exactly 12, but OpenCV computes 13 * (1 / (26 / 480)), which is
    // 239.99999999999997 in Python, i.e. block pixel 239 of cell 11.
    CHECK(ra::upsample_mask(m, 26, 1)[13] == 12);
    CHECK(ra::upsample_mask(m, 26, 1, ra::Nearest::opencv)[13] == 11);
    // At 480 = 20 * 24 pixels OpenCV's scale is 1: pixel x is block pixel x, cell x / 20.
    const auto same = ra::upsample_mask(m, 480, 1, ra::Nearest::opencv);
    for (int x = 0; x < 480; ++x) REQUIRE(same[static_cast<std::size_t>(x)] == x / 20);

    CHECK(ra::upsample_mask(m, 0, 5).empty());
    CHECK_THROWS_AS(ra::upsample_mask(m, -1, 5), moe::ConfigError);
    ra::MaskParse bad = m;
    bad.cells.pop_back();
    CHECK_THROWS_AS(ra::upsample_mask(bad, 4, 4), moe::ShapeError);

    CHECK(ra::foreground(std::vector<std::uint16_t>{0, 3, 0, 1}) == std::vector<std::uint8_t>{0, 1, 0, 1});
}

TEST_CASE("rsunivlm parse_mask: random well-formed answers round-trip", "[rsunivlm][answers]") {
    const std::vector<std::string> names = {"others", "water", "bare land", "low vegetation", "building"};
    std::mt19937 rng(20240611);
    for (int iter = 0; iter < 200; ++iter) {
        const int h = std::uniform_int_distribution<int>(1, 30)(rng);
        const int w = std::uniform_int_distribution<int>(1, 30)(rng);
        const int k = std::uniform_int_distribution<int>(1, 5)(rng);
        std::uniform_int_distribution<int> pick(0, k - 1), keep(0, 3);
        std::vector<std::string> grid;  // labels, row-major
        std::string text;
        for (int r = 0; r < h; ++r) {
            int cur = pick(rng);
            for (int c = 0; c < w; ++c) {
                if (keep(rng) == 0) cur = pick(rng);  // runs of the same label
                grid.push_back(names[static_cast<std::size_t>(cur)]);
            }
            // The demo's format: maximal runs "label*count" joined by ", ", rows by "\n".
            for (int c = 0; c < w;) {
                int e = c;
                while (e < w && grid[static_cast<std::size_t>(r * w + e)] == grid[static_cast<std::size_t>(r * w + c)]) ++e;
                if (c > 0) text += ", ";
                text += grid[static_cast<std::size_t>(r * w + c)];
                text += '*';
                text += std::to_string(e - c);
                c = e;
            }
            if (r + 1 < h) text += '\n';
        }
        INFO(text);
        const auto m = ra::parse_mask(text, h, w);
        check_invariants(m);
        REQUIRE(m.rows == h);
        REQUIRE(m.cols == w);
        REQUIRE(m.demo_accepts);
        REQUIRE(m.problems.empty());
        REQUIRE(labels_of(m) == grid);
        const auto d = ra::parse_mask(text);  // against 24 x 24: the same grid when it fits
        if (h <= 24 && w <= 24) REQUIRE(labels_of(d) == grid);
        REQUIRE(d.demo_accepts);
    }
}

}  // namespace moe_test_test_rsunivlm_answers
