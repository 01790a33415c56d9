// rs/rsunivlm/answers.hpp - parsers for RSUniVLM's text answers: boxes and segmentation masks.
//
// RSUniVLM answers in text. Its released demo (app.py of xuliu-cyber/RSUniVLM) turns two kinds
// of answers into pictures; this header reads the same texts, says where the demo would have
// given up (demo_accepts), and recovers what it can instead of giving up.
//
//   task_of(question)          which parser the demo applies to a question's answer
//   parse_boxes(text)          "[x1, y1, x2, y2]" boxes in percent of the image -> Box
//   to_pixels(box, w, h)       the demo's int(v / 100 * size) -> PixelBox (not clamped)
//   clamp(pixel_box, w, h)     corners clamped into the image, for drawing
//   to_percent / format_box    the inverse, for region prompts: pixel box -> "[x1, y1, x2, y2]"
//   parse_mask(text, 24, 24)   "label*count, label*count\n..." rows -> grid of class indices
//   upsample_mask(m, w, h)     the grid resized to the image by the demo's nearest-neighbour rule
//   foreground(m)              1 where the class is not "others" (the demo's white), else 0
//
// Every function is total on its text input: any bytes give a result (never an exception,
// never undefined behaviour) in O(text length + rows * cols) time and memory. Exceptions
// (moe::ConfigError, moe::ShapeError) are thrown only for bad numeric arguments.
//
// Boxes (the demo's draw_box)
// ---------------------------
// The demo finds re.findall(r"\[([0-9., ]+)\]", text): a '[', one or more of the characters
// digit, '.', ',' and ' ', and a ']' (so "[1, 2, 3, 4]" matches but "[1,2,3,4a]", "[-1, 2, 3, 4]"
// and "[1,\n2, 3, 4]" do not); matches do not overlap and are found left to right. Each match is
// split on ',' and every piece converted with Python's float(): surrounding spaces are allowed,
// then digits with at most one '.' ("45", "45.", ".5", "4.5"); "", " ", ".", "1.2.3" and "1 2"
// are not numbers. A match of exactly 4 numbers is a box [x1, y1, x2, y2], more than 4 keeps the
// first 4, fewer than 4 is dropped. Coordinates are percent (0..100) of the width and height,
// origin top left; the demo draws int(x / 100 * width) (double arithmetic, truncation toward
// zero: int(29 / 100 * 100) is 28). The demo returns nothing at all when any piece of any match
// is not a float, when there are more than 6 boxes (it has 6 colours) or when a coordinate is
// infinite (a number of 309+ digits; int(inf) raises). For a question containing "REF" (and
// none of the tags that take precedence, see task_of) the demo reads the boxes of the *question*
// ("[REF] what is [1, 20, 9, 30]?"), not of the answer.
//
// parse_boxes goes further: a match with a piece that is not a number is dropped (the other
// matches are kept), coordinates outside 0..100 are kept; each of these, and every truncated or
// dropped match, is a problem (a sentence in BoxParse::problems); demo_accepts says whether the
// demo would have drawn the boxes. A number too large for a double is +infinity, as in Python.
//
// Masks (the demo's parse_output_string, patch_size 20)
// ----------------------------------------------------
// Grammar the demo accepts, after lower-casing the text and stripping it of surrounding
// whitespace:
//   answer = row { "\n" row }                       (split on "\n" only; "\r" is whitespace)
//   row    = piece { ", " piece }                   (the separator is exactly comma, space)
//   piece  = label "*" count                        (exactly one '*')
//   label  = ws* word { " " word } ws*              word = [a-z]+, single spaces between words
//   count  = ws* [+-] digit { ["_"] digit } ws*     (Python int(); leading zeros allowed, at
//                                                     most 4300 digits, Python 3.11's limit)
// A piece contributes max(count, 0) cells of its label (a negative count contributes nothing,
// without error). Every row must have the same number of cells, at least one; the grid is then
// rows x cells-per-row - any size: a consistent 3 x 5 answer is a 3 x 5 mask, 24 x 24 is only
// what the model was trained to write. Label "others" is the background (black), every other
// label the foreground (white); a label is looked up after numpy drops its trailing NUL bytes
// and strip() its whitespace. A label of another form (a digit, '_', two spaces, empty) is
// missing from the demo's label table (built by re.findall(r'\b[a-z]+(?: [a-z]+)*\b') over the
// whole text) and fails the demo when its piece has a positive count. The demo also fails when a
// row is wider than 107374182 cells (20 * width must fit OpenCV's int); beyond that it is
// assumed to have the memory. The grid is drawn as 20 x 20 blocks and resized to the image
// (cv2.INTER_NEAREST).
//
// parse_mask(text, expected_rows, expected_cols) reads the same grammar and never gives up:
//   * Rows are numbered from 1 as lines of the stripped text. A blank line is skipped. A piece
//     without '*' or whose count has no digits is skipped; a count with trailing junk
//     ("24," or "3*4") is read by its leading integer; a negative count is 0 (as in the demo).
//     A label that is not of the demo's form keeps a class of its own (foreground); an empty
//     label is "others". Each of these is a problem that the demo fails on (demo_accepts false),
//     except the negative count.
//   * Shape: when every row read has the same positive number of cells T, the grid is
//     rows x T as in the demo (a problem notes a shape other than expected), cut to at most
//     expected_rows x expected_cols. Otherwise the grid is expected_rows x expected_cols: a
//     shorter row (a cut-off answer's last row) is padded with "others", a longer one cut, missing
//     rows are "others", extra rows dropped - each a problem.
//   * Memory never exceeds expected_rows * expected_cols cells plus O(text length): huge
//     counts are never expanded. At most 65536 classes (more labels map to "others", noted).
//   * Only ASCII is interpreted: bytes >= 0x80 are neither letters, digits nor whitespace. The
//     demo's Unicode lower(), strip() and int() (e.g. U+00A0 as whitespace, Arabic-Indic digits)
//     are not reproduced; demo_accepts may differ from the demo only on such non-ASCII texts.
//   * At most 64 problems are listed; a last one then says how many more there were.
//
// Upsampling: output pixel (y, x) of a width x height image shows cell
// (floor(y * rows / height), floor(x * cols / width)) - the exact nearest-neighbour map of the
// 20-pixel blocks (Nearest::exact, computed in integers). OpenCV computes it in doubles,
// floor(x * (1 / (width / (20 * cols)))) / 20, which lands one cell lower where x * cols / width
// is an exact integer and the double product rounds below it (cols 24, width 26, x 13: exact
// cell 12, OpenCV 11); Nearest::opencv reproduces that arithmetic.
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <vector>

#include "moe/core/error.hpp"

namespace moe::rs::rsunivlm {

// --- which parser a question's answer goes to ---------------------------------------------------

/// What the demo does with the answer to a question (echo() of app.py).
enum class Task {
    none,               ///< no tag the demo knows: it shows nothing
    text,               ///< [CAP], [VQA], [CLS] or [CCD]: the answer is shown as text
    boxes_in_answer,    ///< [VG]: parse_boxes(answer)
    boxes_in_question,  ///< "REF" (the demo tests the bare word): parse_boxes(question)
    mask,               ///< [SEG]: parse_mask(answer); takes precedence over every other tag
};

/// The demo's dispatch, case-sensitive substring tests in its order: "[SEG]" -> mask; else
/// "[CAP]", "[VQA]", "[CLS]" or "[CCD]" -> text; else "[VG]" -> boxes_in_answer; else "REF" ->
/// boxes_in_question; else none.
inline Task task_of(std::string_view question) {
    auto has = [&](std::string_view tag) { return question.find(tag) != std::string_view::npos; };
    if (has("[SEG]")) return Task::mask;
    if (has("[CAP]") || has("[VQA]") || has("[CLS]") || has("[CCD]")) return Task::text;
    if (has("[VG]")) return Task::boxes_in_answer;
    if (has("REF")) return Task::boxes_in_question;
    return Task::none;
}

namespace detail {

/// Python's str.isspace() on ASCII: space, \t \n \v \f \r and the separators \x1c-\x1f.
constexpr bool py_space(char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}
constexpr bool is_digit(char c) { return c >= '0' && c <= '9'; }
constexpr bool is_lower(char c) { return c >= 'a' && c <= 'z'; }

/// Python's str.strip() (ASCII whitespace).
inline std::string_view py_strip(std::string_view s) {
    std::size_t b = 0, e = s.size();
    while (b < e && py_space(s[b])) ++b;
    while (e > b && py_space(s[e - 1])) --e;
    return s.substr(b, e - b);
}

/// Up to 24 bytes of s in quotes, bytes outside printable ASCII as '?', "..." when cut.
inline std::string quote(std::string_view s) {
    constexpr std::size_t kMax = 24;
    std::string out = "'";
    for (std::size_t i = 0; i < s.size() && i < kMax; ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
    }
    if (s.size() > kMax) out += "...";
    out += "'";
    return out;
}

/// A list of problems that keeps at most 64 sentences and counts the rest.
class Problems {
public:
    void add(std::string s) {
        if (list_.size() < kMax)
            list_.push_back(std::move(s));
        else
            ++more_;
    }
    std::vector<std::string> finish() {
        if (more_ > 0) {
            std::string s = "... and ";
            s += std::to_string(more_);
            s += " more problems";
            list_.push_back(std::move(s));
        }
        return std::move(list_);
    }

private:
    static constexpr std::size_t kMax = 64;
    std::vector<std::string> list_;
    std::size_t more_ = 0;
};

/// Python float() of a piece of a box match (only digits, '.' and ' ' can occur there):
/// returns false when float() raises, else the value (+inf past the double range, 0 below it).
inline bool py_float(std::string_view piece, double& value) {
    const std::string_view s = py_strip(piece);
    std::size_t digits = 0, dots = 0;
    for (char c : s) {
        if (is_digit(c))
            ++digits;
        else if (c == '.')
            ++dots;
        else
            return false;  // an inner space
    }
    if (digits == 0 || dots > 1) return false;
    double v = 0.0;
    const auto r = std::from_chars(s.data(), s.data() + s.size(), v, std::chars_format::fixed);
    if (r.ec == std::errc::result_out_of_range) {
        const std::string_view whole = s.substr(0, s.find('.'));
        v = whole.find_first_not_of('0') == std::string_view::npos ? 0.0 : std::numeric_limits<double>::infinity();
    } else if (r.ec != std::errc() || r.ptr != s.data() + s.size()) {
        return false;  // not reached for the strings admitted above
    }
    value = v;
    return true;
}

}  // namespace detail

// --- boxes --------------------------------------------------------------------------------------

/// A box as the model writes it: corners in percent (0..100) of the width and height, origin
/// at the top left. Nothing orders the corners.
struct Box {
    double x1 = 0, y1 = 0, x2 = 0, y2 = 0;
};

/// What parse_boxes found.
struct BoxParse {
    std::vector<Box> boxes;             ///< in the order of the text
    std::vector<std::string> problems;  ///< one sentence each; empty when the text is clean
    bool demo_accepts = true;           ///< the demo would have drawn these boxes
};

/// The boxes of a text, the demo's way (see the file comment); a text without any "[...]" gives
/// no boxes, no problems and demo_accepts true (the demo draws an unchanged image).
inline BoxParse parse_boxes(std::string_view text) {
    BoxParse out;
    detail::Problems problems;
    auto admitted = [](char c) { return detail::is_digit(c) || c == '.' || c == ',' || c == ' '; };
    std::size_t match_no = 0;
    std::size_t i = 0;
    while (i < text.size()) {
        if (text[i] != '[') {
            ++i;
            continue;
        }
        std::size_t j = i + 1;
        while (j < text.size() && admitted(text[j])) ++j;
        if (j == i + 1 || j == text.size() || text[j] != ']') {
            i = j > i + 1 ? j : i + 1;  // no '[' lies in (i, j): none can start a match there
            continue;
        }
        const std::string_view body = text.substr(i + 1, j - i - 1);
        i = j + 1;
        ++match_no;
        std::string where = "match ";
        where += std::to_string(match_no);
        where += " [";
        where += detail::quote(body);
        where += "]";

        std::vector<double> nums;
        bool broken = false;
        std::size_t start = 0;
        while (true) {
            const std::size_t comma = body.find(',', start);
            const std::string_view piece = body.substr(start, comma == std::string_view::npos ? body.npos : comma - start);
            double v = 0;
            if (detail::py_float(piece, v)) {
                nums.push_back(v);
            } else {
                if (!broken) {
                    std::string s = where;
                    s += ": ";
                    s += detail::quote(piece);
                    s += " is not a number (the demo gives up on the whole answer); match dropped";
                    problems.add(std::move(s));
                }
                broken = true;
            }
            if (comma == std::string_view::npos) break;
            start = comma + 1;
        }
        if (broken) {
            out.demo_accepts = false;
            continue;
        }
        if (nums.size() < 4) {
            std::string s = where;
            s += ": ";
            s += std::to_string(nums.size());
            s += " numbers, fewer than 4; dropped (as by the demo)";
            problems.add(std::move(s));
            continue;
        }
        if (nums.size() > 4) {
            std::string s = where;
            s += ": ";
            s += std::to_string(nums.size());
            s += " numbers; the first 4 kept (as by the demo)";
            problems.add(std::move(s));
        }
        const Box b{nums[0], nums[1], nums[2], nums[3]};
        for (double v : {b.x1, b.y1, b.x2, b.y2}) {
            if (!(v >= 0.0 && v <= 100.0)) {
                std::string s = where;
                s += ": a coordinate outside 0..100 (kept)";
                if (std::isinf(v)) {
                    s += "; it is infinite, which the demo cannot draw";
                    out.demo_accepts = false;
                }
                problems.add(std::move(s));
                break;
            }
        }
        out.boxes.push_back(b);
    }
    if (out.boxes.size() > 6) {
        std::string s = std::to_string(out.boxes.size());
        s += " boxes: the demo has 6 colours and draws none when there are more";
        problems.add(std::move(s));
        out.demo_accepts = false;
    }
    out.problems = problems.finish();
    return out;
}

/// A box in pixels, corners as given (not ordered, not clamped).
struct PixelBox {
    int x1 = 0, y1 = 0, x2 = 0, y2 = 0;
};

namespace detail {
/// Python's int() of a double, saturated to int's range where Python's int is wider (the demo
/// would then fail in OpenCV); NaN gives 0 (Python raises; unreachable from parse_boxes).
inline int trunc_to_int(double v) {
    if (std::isnan(v)) return 0;
    if (v >= 2147483648.0) return std::numeric_limits<int>::max();
    if (v <= -2147483649.0) return std::numeric_limits<int>::min();
    return static_cast<int>(v);
}
}  // namespace detail

/// The demo's pixel corners of a box in a width x height image: int(x / 100 * width) and
/// int(y / 100 * height) in double arithmetic, truncated toward zero (so 29% of 100 pixels is 28,
/// because 29 / 100 * 100 is 28.999999999999996). Not clamped: 100% of 256 is 256, one past the
/// last pixel (see clamp). Values beyond int's range saturate.
inline PixelBox to_pixels(const Box& b, int width, int height) {
    const double w = width, h = height;
    return {detail::trunc_to_int(b.x1 / 100.0 * w), detail::trunc_to_int(b.y1 / 100.0 * h),
            detail::trunc_to_int(b.x2 / 100.0 * w), detail::trunc_to_int(b.y2 / 100.0 * h)};
}

/// The corners clamped into the image for drawing: x into 0..width-1, y into 0..height-1
/// (0 when the size is 0 or less). The corners are not reordered.
inline PixelBox clamp(const PixelBox& p, int width, int height) {
    auto c = [](int v, int size) { return std::clamp(v, 0, std::max(size - 1, 0)); };
    return {c(p.x1, width), c(p.y1, height), c(p.x2, width), c(p.y2, height)};
}

/// A box in whole percent (what a region prompt holds).
struct PercentBox {
    int x1 = 0, y1 = 0, x2 = 0, y2 = 0;
};

/// The inverse of to_pixels for region prompts: each corner clamped into 0..width (0..height),
/// then round(100 * v / size) to the nearest integer, halves up, in exact integer arithmetic;
/// the result lies in 0..100. Throws moe::ConfigError when width or height is not positive.
inline PercentBox to_percent(const PixelBox& p, int width, int height) {
    moe::check<moe::ConfigError>(width > 0 && height > 0, "rsunivlm::to_percent", "image size ", width, " x ", height,
                                 ": both must be positive");
    auto pct = [](int v, int size) {
        const long long c = std::clamp<long long>(v, 0, size);
        return static_cast<int>((200 * c + size) / (2LL * size));
    };
    return {pct(p.x1, width), pct(p.y1, height), pct(p.x2, width), pct(p.y2, height)};
}

/// "[x1, y1, x2, y2]" - the form the model reads in a region prompt ("[REF] what is
/// [1, 20, 9, 30]?") and writes in its answers; the values are written as they are.
inline std::string format_box(const PercentBox& b) {
    std::string s = "[";
    s += std::to_string(b.x1);
    s += ", ";
    s += std::to_string(b.y1);
    s += ", ";
    s += std::to_string(b.x2);
    s += ", ";
    s += std::to_string(b.y2);
    s += "]";
    return s;
}

/// format_box(to_percent(p, width, height)): a pixel box of the original image as a prompt box.
inline std::string format_box(const PixelBox& p, int width, int height) {
    return format_box(to_percent(p, width, height));
}

// --- masks --------------------------------------------------------------------------------------

/// A mask answer as a grid of class indices.
struct MaskParse {
    int rows = 0, cols = 0;                ///< the grid (see the file comment for how it is chosen)
    std::vector<std::uint16_t> cells;      ///< rows * cols class indices, row-major
    std::vector<std::string> classes;      ///< [0] is "others"; then each other label (lower-case,
                                           ///< stripped) of a positive count, by first appearance
    std::vector<std::string> problems;     ///< one sentence each, with row numbers
    bool demo_accepts = false;             ///< the demo would have produced a mask
};

namespace detail {

/// The label form the demo's regex produces: [a-z]+( [a-z]+)*.
inline bool is_label_form(std::string_view s) {
    if (s.empty() || s.front() == ' ' || s.back() == ' ') return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (is_lower(s[i])) continue;
        if (s[i] == ' ' && s[i - 1] != ' ') continue;
        return false;
    }
    return true;
}

/// A count as Python's int() reads it, plus a lenient reading.
struct Count {
    bool has_number = false;  ///< a leading integer was found (after whitespace and sign)
    bool python_ok = false;   ///< int() accepts the whole text
    long long value = 0;      ///< the leading integer, saturated at +-kCountCap
};
constexpr long long kCountCap = 1LL << 40;  // above every width the demo can draw
constexpr std::size_t kPythonMaxDigits = 4300;  // int()'s default limit since Python 3.11 (and 3.10.7)

inline Count parse_count(std::string_view text) {
    Count c;
    const std::string_view s = py_strip(text);
    std::size_t i = 0;
    bool neg = false;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    long long v = 0;
    std::size_t digits = 0;
    while (i < s.size()) {
        if (is_digit(s[i])) {
            v = std::min(kCountCap, v * 10 + (s[i] - '0'));
            ++digits;
            ++i;
        } else if (s[i] == '_' && digits > 0 && i + 1 < s.size() && is_digit(s[i + 1])) {
            ++i;  // Python allows one '_' between digits
        } else {
            break;
        }
    }
    c.has_number = digits > 0;
    c.python_ok = c.has_number && i == s.size() && digits <= kPythonMaxDigits;
    c.value = neg ? -v : v;
    return c;
}

}  // namespace detail

/// Reads a mask answer (see the file comment for the grammar, the demo's limits and what is
/// done beyond them). expected_rows and expected_cols (24 x 24 for RSUniVLM) bound the grid and
/// are the shape of a repaired one; each must be in 1..65536 and their product at most 2^24
/// (moe::ConfigError otherwise). The result always has rows, cols >= 1, cells.size() == rows *
/// cols and every cell < classes.size().
inline MaskParse parse_mask(std::string_view text, int expected_rows = 24, int expected_cols = 24) {
    moe::check<moe::ConfigError>(expected_rows >= 1 && expected_rows <= 65536 && expected_cols >= 1 &&
                                     expected_cols <= 65536 &&
                                     static_cast<long long>(expected_rows) * expected_cols <= (1LL << 24),
                                 "rsunivlm::parse_mask", "expected grid ", expected_rows, " x ", expected_cols,
                                 ": each side must be in 1..65536 and the product at most 2^24");
    constexpr long long kDemoMaxWidth = 107374182;  // 20 * width must fit OpenCV's int
    constexpr std::size_t kMaxClasses = 65536;

    MaskParse out;
    out.classes.emplace_back("others");
    detail::Problems problems;
    bool demo_ok = true;
    auto row_note = [&](std::size_t row, std::string_view what) {
        std::string s = "row ";
        s += std::to_string(row);
        s += ": ";
        s += what;
        problems.add(std::move(s));
    };

    std::string lower(text);
    for (char& c : lower)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    const std::string_view all = detail::py_strip(lower);

    struct Run {
        std::uint16_t cls;
        long long count;
    };
    struct Row {
        std::size_t number;             // line of the stripped text, from 1
        std::size_t first_run, n_runs;  // into runs
        long long total;                // cells, saturated at kCountCap
    };
    std::vector<Run> runs;
    std::vector<Row> rows;
    std::unordered_map<std::string_view, std::uint16_t> class_of;  // views into `lower`
    class_of.emplace("others", std::uint16_t{0});
    bool classes_full_noted = false;

    if (all.empty()) {
        problems.add("empty answer: the grid is all \"others\"");
        demo_ok = false;
    } else {
        std::size_t line_no = 0, line_start = 0;
        while (line_start <= all.size()) {
            const std::size_t nl = all.find('\n', line_start);
            const std::size_t line_end = nl == std::string_view::npos ? all.size() : nl;
            const std::string_view line = all.substr(line_start, line_end - line_start);
            line_start = line_end + 1;
            ++line_no;
            if (detail::py_strip(line).empty()) {
                row_note(line_no, "empty line, skipped");
                demo_ok = false;
                continue;
            }
            Row row{line_no, runs.size(), 0, 0};
            std::size_t piece_start = 0;
            while (true) {
                const std::size_t sep = line.find(", ", piece_start);
                const std::string_view piece =
                    line.substr(piece_start, sep == std::string_view::npos ? line.npos : sep - piece_start);
                piece_start = sep == std::string_view::npos ? line.size() : sep + 2;
                const std::size_t star = piece.find('*');
                if (star == std::string_view::npos) {
                    std::string s = "piece ";
                    s += detail::quote(piece);
                    s += " has no '*', skipped";
                    row_note(line_no, s);
                    demo_ok = false;
                } else {
                    // numpy's str arrays drop trailing NULs before the demo's strip().
                    std::string_view raw = piece.substr(0, star);
                    while (!raw.empty() && raw.back() == '\0') raw.remove_suffix(1);
                    const std::string_view label = detail::py_strip(raw);
                    const std::string_view count_text = piece.substr(star + 1);
                    const detail::Count count = detail::parse_count(count_text);
                    if (!count.has_number) {
                        std::string s = "piece ";
                        s += detail::quote(piece);
                        s += " has no count, skipped";
                        row_note(line_no, s);
                        demo_ok = false;
                    } else {
                        if (!count.python_ok) {
                            std::string s = "count ";
                            s += detail::quote(count_text);
                            s += " is not an integer to Python; read as ";
                            s += std::to_string(count.value);
                            row_note(line_no, s);
                            demo_ok = false;
                        }
                        if (count.value < 0) {
                            std::string s = "negative count ";
                            s += detail::quote(count_text);
                            s += " read as 0 (as by the demo)";
                            row_note(line_no, s);
                        }
                        if (count.value > 0) {
                            std::uint16_t cls = 0;
                            if (label.empty()) {
                                row_note(line_no, "empty label (the demo fails on it), read as \"others\"");
                                demo_ok = false;
                            } else {
                                if (!detail::is_label_form(label)) {
                                    std::string s = "label ";
                                    s += detail::quote(label);
                                    s += " is not lower-case words with single spaces (the demo fails on it)";
                                    row_note(line_no, s);
                                    demo_ok = false;
                                }
                                const auto it = class_of.find(label);
                                if (it != class_of.end()) {
                                    cls = it->second;
                                } else if (out.classes.size() < kMaxClasses) {
                                    cls = static_cast<std::uint16_t>(out.classes.size());
                                    out.classes.emplace_back(label);
                                    class_of.emplace(label, cls);
                                } else if (!classes_full_noted) {
                                    problems.add("more than 65536 labels: the further ones read as \"others\"");
                                    classes_full_noted = true;
                                }
                            }
                            runs.push_back({cls, count.value});
                            ++row.n_runs;
                            row.total = std::min(detail::kCountCap, row.total + count.value);
                        }
                    }
                }
                if (sep == std::string_view::npos) break;
            }
            rows.push_back(row);
            if (nl == std::string_view::npos) break;
        }
    }

    // The shape: the text's own when it is consistent, else the expected one.
    bool consistent = !rows.empty() && rows.front().total > 0;
    for (const Row& r : rows) consistent = consistent && r.total == rows.front().total;
    if (consistent) {
        const long long t = rows.front().total;
        if (t > kDemoMaxWidth || static_cast<long long>(rows.size()) > kDemoMaxWidth) demo_ok = false;
        out.rows = static_cast<int>(std::min<std::size_t>(rows.size(), static_cast<std::size_t>(expected_rows)));
        out.cols = static_cast<int>(std::min<long long>(t, expected_cols));
        if (static_cast<long long>(rows.size()) != expected_rows || t != expected_cols) {
            std::string s = "the grid is ";
            s += std::to_string(rows.size());
            s += " x ";
            s += std::to_string(t);
            s += " cells, expected ";
            s += std::to_string(expected_rows);
            s += " x ";
            s += std::to_string(expected_cols);
            if (out.rows != static_cast<long long>(rows.size()) || out.cols != t) {
                s += "; cut to ";
                s += std::to_string(out.rows);
                s += " x ";
                s += std::to_string(out.cols);
            }
            problems.add(std::move(s));
        }
    } else {
        if (!rows.empty()) demo_ok = false;  // rows of different widths, or no cells at all
        out.rows = expected_rows;
        out.cols = expected_cols;
        for (std::size_t k = 0; k < rows.size() && k < static_cast<std::size_t>(expected_rows); ++k) {
            const Row& r = rows[k];
            if (r.total == expected_cols) continue;
            std::string s = std::to_string(r.total);
            s += r.total >= detail::kCountCap ? "+ cells, expected " : " cells, expected ";
            s += std::to_string(expected_cols);
            s += r.total < expected_cols ? "; padded with \"others\"" : "; cut";
            if (k + 1 == rows.size() && r.total < expected_cols) s += " (the answer may have been cut off)";
            row_note(r.number, s);
        }
        if (rows.size() < static_cast<std::size_t>(expected_rows)) {
            std::string s = std::to_string(static_cast<std::size_t>(expected_rows) - rows.size());
            s += " of ";
            s += std::to_string(expected_rows);
            s += " rows missing: filled with \"others\"";
            problems.add(std::move(s));
        } else if (rows.size() > static_cast<std::size_t>(expected_rows)) {
            std::string s = std::to_string(rows.size() - static_cast<std::size_t>(expected_rows));
            s += " rows beyond the expected ";
            s += std::to_string(expected_rows);
            s += " dropped";
            problems.add(std::move(s));
        }
    }

    // The cells: each row's runs, cut at cols, padded with "others".
    const auto cols = static_cast<std::size_t>(out.cols);
    out.cells.assign(static_cast<std::size_t>(out.rows) * cols, std::uint16_t{0});
    for (std::size_t k = 0; k < rows.size() && k < static_cast<std::size_t>(out.rows); ++k) {
        std::uint16_t* dst = out.cells.data() + k * cols;
        std::size_t pos = 0;
        for (std::size_t q = 0; q < rows[k].n_runs && pos < cols; ++q) {
            const Run& run = runs[rows[k].first_run + q];
            const std::size_t n = static_cast<std::size_t>(std::min<long long>(run.count, static_cast<long long>(cols - pos)));
            std::fill(dst + pos, dst + pos + n, run.cls);
            pos += n;
        }
    }
    out.demo_accepts = demo_ok;
    out.problems = problems.finish();
    return out;
}

/// How upsample_mask maps an output pixel to a grid cell.
enum class Nearest {
    exact,   ///< cell (floor(y * rows / height), floor(x * cols / width)), in integers
    opencv,  ///< cv2.resize(INTER_NEAREST) of the 20-pixel blocks, in its double arithmetic
};

/// The grid as a height x width map of class indices (row-major), by the demo's nearest-
/// neighbour rule (see the file comment). width or height 0 gives an empty map (the demo's
/// OpenCV call fails there). Throws moe::ConfigError for a negative size and moe::ShapeError
/// for a mask whose cells do not match rows x cols (or that has no cells).
inline std::vector<std::uint16_t> upsample_mask(const MaskParse& m, int width, int height,
                                                Nearest rule = Nearest::exact) {
    moe::check<moe::ConfigError>(width >= 0 && height >= 0, "rsunivlm::upsample_mask", "image size ", width, " x ",
                                 height, ": negative");
    moe::check<moe::ShapeError>(m.rows >= 1 && m.cols >= 1 &&
                                    m.cells.size() == static_cast<std::size_t>(m.rows) * static_cast<std::size_t>(m.cols),
                                "rsunivlm::upsample_mask", "mask of ", m.rows, " x ", m.cols, " with ", m.cells.size(),
                                " cells");
    // max(.., 0): the sizes are checked above; this tells GCC too (its loop analysis warns of a
    // 2^64-iteration loop for a negative width otherwise, in some inlining contexts).
    const auto w = static_cast<std::size_t>(std::max(width, 0)), h = static_cast<std::size_t>(std::max(height, 0));
    std::vector<std::uint16_t> out(w * h);
    if (out.empty()) return out;
    constexpr long long kPatch = 20;  // the demo's patch_size
    auto source = [rule](long long i, long long cells, long long size) -> std::size_t {
        if (rule == Nearest::exact) return static_cast<std::size_t>(i * cells / size);
        const long long src = kPatch * cells;  // the block image's side
        const double inv = 1.0 / (static_cast<double>(size) / static_cast<double>(src));
        const long long s = std::min(static_cast<long long>(std::floor(static_cast<double>(i) * inv)), src - 1);
        return static_cast<std::size_t>(s / kPatch);
    };
    std::vector<std::size_t> col_of(w);
    for (std::size_t x = 0; x < w; ++x) col_of[x] = source(static_cast<long long>(x), m.cols, width);
    for (std::size_t y = 0; y < h; ++y) {
        const std::uint16_t* src = m.cells.data() + source(static_cast<long long>(y), m.rows, height) * static_cast<std::size_t>(m.cols);
        std::uint16_t* dst = out.data() + y * w;
        for (std::size_t x = 0; x < w; ++x) dst[x] = src[col_of[x]];
    }
    return out;
}

/// 1 where a class index is not 0 ("others", the demo's black), else 0 - the demo's white and
/// black, for the grid's cells or for an upsample_mask map.
inline std::vector<std::uint8_t> foreground(const std::vector<std::uint16_t>& classes) {
    std::vector<std::uint8_t> out(classes.size());
    for (std::size_t i = 0; i < classes.size(); ++i) out[i] = classes[i] != 0 ? 1 : 0;
    return out;
}

/// foreground(m.cells): rows * cols values, 1 for every label but "others".
inline std::vector<std::uint8_t> foreground(const MaskParse& m) { return foreground(m.cells); }

}  // namespace moe::rs::rsunivlm
