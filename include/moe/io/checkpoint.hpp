// moe/io/checkpoint.hpp - checkpoint access by tensor name: the checks every loader makes.
//
// Namespace moe::io (with SafetensorsFile). Every model loader (moe/loaders/, vision/, rs/)
// reads its tensors through these functions, so a missing, mistyped or misshapen tensor fails
// the same way wherever it is read:
//
//   open_weights(dir)                     a Hugging Face model folder's weights: model.safetensors,
//                                         or the shards named by model.safetensors.index.json
//   module_prefix(prefix)                 "a.b" -> "a.b." ("" stays ""): a module path
//   count_indexed(file, stem)             1 + the largest i of the names stem + "<i>." + ... (0 if none)
//   require_indexed(file, stem, first)    the same, NotFoundError naming `first` when there is none
//   is_float(dtype)                       F32, BF16 or F16
//   float_tensor(file, name)              tensor `name`, DTypeError unless floating point
//   tensor(file, name, shape)             ... of exactly `shape` (ShapeError naming both shapes)
//   matrix(file, name)                    ... a non-empty 2-D [out, in] (its sizes define the others)
//   floats(file, name, shape)             ... as fp32 values (a copy)
//   borrow(file, name, shape)             ... as a Tensor that reads the file's mapping in place and
//                                         keeps it alive (no copy, whatever the dtype)
//   borrow_or_convert(file, name, shape, dtype)
//                                         ... borrowed when its dtype is `dtype`, else converted once
//
// Errors: a missing tensor is a NotFoundError naming it with "did you mean" suggestions (from
// SafetensorsFile::get); a non-float tensor a DTypeError; a tensor of another shape a ShapeError
// naming the tensor, the expected and the found shape and the file.
//
// Building modules from these tensors (gates, expert stacks, whole layers) is the loaders' job
// (moe/loaders/), a floor up: this header knows tensors, not routers or experts.
#pragma once

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "moe/core/dtype.hpp"
#include "moe/core/error.hpp"
#include "moe/core/tensor.hpp"
#include "moe/io/safetensors.hpp"

namespace moe::io {

/// The weights of a Hugging Face model folder: `dir`/model.safetensors when present, else the
/// shards named by `dir`/model.safetensors.index.json (SafetensorsFile::open_index). A path to
/// a .safetensors or .json file opens that file. NotFoundError naming both names otherwise.
inline SafetensorsFile open_weights(const std::filesystem::path& dir) {
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec))
        return dir.extension() == ".json" ? SafetensorsFile::open_index(dir) : SafetensorsFile::open(dir);
    if (std::filesystem::exists(dir / "model.safetensors", ec)) return SafetensorsFile::open(dir / "model.safetensors");
    if (std::filesystem::exists(dir / "model.safetensors.index.json", ec))
        return SafetensorsFile::open_index(dir / "model.safetensors.index.json");
    throw NotFoundError(dir.string(), "no model.safetensors and no model.safetensors.index.json in this folder");
}

/// "a.b" -> "a.b."; "" stays "".
inline std::string module_prefix(std::string prefix) {
    if (!prefix.empty() && prefix.back() != '.') prefix += '.';
    return prefix;
}

/// 1 + the largest i such that a tensor is named stem + "<i>." + ..., or 0 when there is none.
inline index_t count_indexed(const SafetensorsFile& f, std::string_view stem) {
    const auto& tensors = f.header().tensors;
    index_t n = 0;
    for (auto it = tensors.lower_bound(stem); it != tensors.end(); ++it) {
        const std::string_view name = it->first;
        if (name.substr(0, stem.size()) != stem) break;  // sorted: past the names starting with stem
        const char* b = name.data() + stem.size();
        const char* e = name.data() + name.size();
        index_t i = 0;
        const auto [p, ec] = std::from_chars(b, e, i);
        if (ec != std::errc() || p == b || p == e || *p != '.' || i < 0) continue;
        n = std::max(n, i + 1);
    }
    return n;
}

/// count_indexed(f, stem), which must be positive: NotFoundError naming `first` (the first
/// tensor looked for, e.g. "<prefix>experts.0.w1.weight") when no name has the stem.
inline index_t require_indexed(const SafetensorsFile& f, const std::string& stem, const std::string& first) {
    const index_t n = count_indexed(f, stem);
    if (n == 0)
        throw NotFoundError(f.path(), moe::detail::cat("no tensor named '", first, "' (no expert found under '", stem,
                                                       "'; the file has ", f.size(), " tensors)"));
    return n;
}

inline bool is_float(DType t) noexcept { return is_float_dtype(t); }

/// Tensor `name`: NotFoundError when absent, DTypeError unless F32/BF16/F16.
inline TensorView float_tensor(const SafetensorsFile& f, const std::string& name) {
    TensorView v = f.get(name);
    check<DTypeError>(is_float(v.dtype()), name, "expected a floating-point tensor (F32, BF16 or F16), found ",
                      dtype_name(v.dtype()), " in ", f.path());
    return v;
}

/// Tensor `name` of exactly `expected` shape (ShapeError with both shapes otherwise).
inline TensorView tensor(const SafetensorsFile& f, const std::string& name, const Shape& expected) {
    TensorView v = float_tensor(f, name);
    check<ShapeError>(v.shape() == expected, name, "expected shape ", expected.str(), ", found ", v.shape().str(),
                      " in ", f.path());
    return v;
}

/// A non-empty 2-D tensor [out, in] whose sizes define the others (the first expert, the gate).
inline TensorView matrix(const SafetensorsFile& f, const std::string& name) {
    TensorView v = float_tensor(f, name);
    check<ShapeError>(v.rank() == 2 && v.dim(0) > 0 && v.dim(1) > 0, name,
                      "expected a non-empty 2-D weight [out, in], found shape ", v.shape().str(), " in ", f.path());
    return v;
}

/// A float tensor of `expected` shape, as fp32 values.
inline std::vector<float> floats(const SafetensorsFile& f, const std::string& name, const Shape& expected) {
    const TensorView v = tensor(f, name, expected);
    const Tensor t = convert(v, DType::f32);
    const auto s = t.span<float>();
    return {s.begin(), s.end()};
}

/// Tensor `name` of shape `expected`, borrowed from the file's mapping (no copy; the Tensor
/// keeps the mapping alive and copies only on a mutable access).
inline Tensor borrow(const SafetensorsFile& f, const std::string& name, const Shape& expected) {
    return Tensor::borrow(tensor(f, name, expected), f.keep_alive());
}

/// Tensor `name` of shape `expected` in dtype `dtype`: borrowed from the mapping when the file
/// holds it in that dtype, converted once otherwise.
inline Tensor borrow_or_convert(const SafetensorsFile& f, const std::string& name, const Shape& expected, DType dtype) {
    const TensorView v = tensor(f, name, expected);
    if (v.dtype() == dtype) return Tensor::borrow(v, f.keep_alive());
    return convert(v, dtype);
}

}  // namespace moe::io
