// moe/io/quantize.hpp - int8 checkpoints: the quantiser, and Linear weights loaded whether a file
// holds them in float or in int8.
//
// The convention (docs/scaling.md, "The int8 format"): a quantised weight keeps its name and
// becomes I8 with its input features last, [..., out, in] (a MindSpore [E, in, out] expert stack
// is written [E, out, in]); its scales are the F32 tensor "<name>_scale" beside it, [..., out]
// (one per output channel) or [..., out, in / group] (groups of `group` consecutive inputs, a
// multiple of 32). A reader tells a quantised weight by its I8 dtype and finds the scales by the
// name; the file's metadata also says so ("moe.quantization": "int8", "moe.int8.group"). Values
// are moe::cpu::quantize_int8's (symmetric, round to nearest even; moe/backend/cpu/gemm_int8.hpp).
//
//   quantize_checkpoint(in, out, opt)   writes such a file from a float one, tensor by tensor
//                                       (streamed: memory stays at one tensor)
//   load_linears<W>(f, names, ...)      E Linear matrices from E tensors, float or int8
//   load_stacked_linear<W>(f, name, ...) E matrices from one stacked tensor, float or int8
//   dequantize(f, name)                 an int8 matrix's values as F32 (an embedding table)
// Float weights load into any policy as before (int8 policies quantise them per output channel);
// int8 weights are borrowed from the mapping by int8 policies and dequantised once by others.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "moe/backend/cpu/gemm_int8.hpp"
#include "moe/backend/cpu/linear.hpp"
#include "moe/core/error.hpp"
#include "moe/core/precision.hpp"
#include "moe/core/tensor.hpp"
#include "moe/io/checkpoint.hpp"
#include "moe/io/safetensors.hpp"

namespace moe::io {

/// "<weight>_scale": the scales of an int8 weight.
inline std::string int8_scale_name(std::string_view weight) { return std::string(weight) + "_scale"; }

/// Whether `name` is held in int8 (I8; its scales must then be beside it).
inline bool is_int8(const SafetensorsFile& f, const std::string& name) {
    return f.contains(name) && f.get(name).dtype() == DType::i8;
}

/// A non-empty 2-D Linear weight [out, in] whose sizes define the others (the first expert),
/// float or int8.
inline TensorView linear_matrix(const SafetensorsFile& f, const std::string& name) {
    if (!is_int8(f, name)) return matrix(f, name);
    const TensorView v = f.get(name);
    check<ShapeError>(v.rank() == 2 && v.dim(0) > 0 && v.dim(1) > 0, name,
                      "expected a non-empty 2-D int8 weight [out, in], found shape ", v.shape().str(), " in ", f.path());
    return v;
}

/// Tensor `name`'s scales, checked against its int8 shape [..., out, in]: [..., out] or
/// [..., out, in / group].
inline TensorView int8_scales(const SafetensorsFile& f, const std::string& name, const Shape& q) {
    const std::string sn = int8_scale_name(name);
    check<NotFoundError>(f.contains(sn), name, "is int8 but its scales '", sn, "' are missing in ", f.path());
    const TensorView s = f.get(sn);
    check<DTypeError>(s.dtype() == DType::f32, sn, "int8 scales must be F32, found ", dtype_name(s.dtype()), " in ",
                      f.path());
    const index_t r = q.rank();
    bool ok = s.rank() == r || s.rank() == r - 1;
    for (index_t i = 0; ok && i < r - 1; ++i) ok = s.dim(i) == q[i];
    check<ShapeError>(ok, sn, "int8 scales of ", q.str(), " must be [..., out] or [..., out, groups], found ",
                      s.shape().str(), " in ", f.path());
    return s;
}

/// The float matrix an int8 weight `name` [out, in] stands for, scale * q (exactly
/// cpu::Int8Matrix::value), as an owned F32 tensor: for what reads values rather than multiplying
/// (an embedding table). ShapeError when the weight is not `expected` (when given) or not 2-D.
inline Tensor dequantize(const SafetensorsFile& f, const std::string& name, const Shape& expected = {}) {
    const TensorView q = f.get(name);
    check<DTypeError>(q.dtype() == DType::i8, name, "expected an int8 weight, found ", dtype_name(q.dtype()), " in ",
                      f.path());
    check<ShapeError>(q.rank() == 2 && (expected.rank() == 0 || q.shape() == expected), name, "expected int8 shape ",
                      expected.rank() ? expected.str() : std::string("[out, in]"), ", found ", q.shape().str(), " in ",
                      f.path());
    const TensorView s = int8_scales(f, name, q.shape());
    const index_t N = q.dim(0), K = q.dim(1), group = cpu::int8_group_of(s.shape(), N, K);
    check<ShapeError>(group > 0, int8_scale_name(name), "scales ", s.shape().str(), " do not divide ", K,
                      " inputs into groups of a multiple of 32, in ", f.path());
    Tensor out(DType::f32, Shape{N, K});
    cpu::dequantize_int8(cpu::Int8Matrix{q.data<std::int8_t>(name), s.data<float>(name), N, K, K, group},
                         out.data<float>());
    return out;
}

/// E Linear matrices named names[i]: a float [out, in] (or [in, out] with layout in_out) tensor,
/// or an int8 [out, in] one with its scales; biases[i] [out] when given (none or E).
template <WeightPolicy W>
cpu::Linear<W> load_linears(const SafetensorsFile& f, std::span<const std::string> names,
                            std::span<const TensorView> biases, index_t out, index_t in, WeightLayout layout,
                            const std::string& what) {
    check<ShapeError>(!names.empty(), what, "no weights to load");
    if (!is_int8(f, names[0])) {
        std::vector<TensorView> ws;
        for (const auto& n : names)
            ws.push_back(tensor(f, n, layout == WeightLayout::out_in ? Shape{out, in} : Shape{in, out}));
        return cpu::Linear<W>::from_list(ws, biases, f.keep_alive(), what, layout);
    }
    std::vector<TensorView> qs, ss;
    for (const auto& n : names) {
        const TensorView q = f.get(n);
        check<DTypeError>(q.dtype() == DType::i8, n, "expected I8 like ", names[0], ", found ", dtype_name(q.dtype()));
        check<ShapeError>(q.shape() == Shape{out, in}, n, "expected int8 shape ", Shape{out, in}.str(),
                          " ([out, in]), found ", q.shape().str(), " in ", f.path());
        qs.push_back(q);
        ss.push_back(int8_scales(f, n, q.shape()));
    }
    return cpu::Linear<W>::from_int8_list(qs, ss, biases, f.keep_alive(), what);
}

/// E matrices from one stacked tensor `name`: float [E, out, in] (or [E, in, out] with layout
/// in_out), or int8 [E, out, in] with its scales; bias [E, out] or null.
template <WeightPolicy W>
cpu::Linear<W> load_stacked_linear(const SafetensorsFile& f, const std::string& name, index_t E, index_t out,
                                   index_t in, const TensorView* bias, WeightLayout layout) {
    if (!is_int8(f, name)) {
        const TensorView w = tensor(f, name, layout == WeightLayout::out_in ? Shape{E, out, in} : Shape{E, in, out});
        return cpu::Linear<W>::from_stacked(w, bias, f.keep_alive(), name, layout);
    }
    const TensorView q = f.get(name);
    check<ShapeError>(q.shape() == Shape{E, out, in}, name, "expected int8 shape ", Shape{E, out, in}.str(),
                      " ([E, out, in]), found ", q.shape().str(), " in ", f.path());
    return cpu::Linear<W>::from_int8_stacked(q, int8_scales(f, name, q.shape()), bias, f.keep_alive(), name);
}

/// Adds the int8 weight `name` and its scales "<name>_scale" to `w`, streamed: E matrices of
/// `out` x `in` (stacked: I8 [E, out, in] and F32 [E, out] or [E, out, in / group]; otherwise E
/// == 1 and [out, in], [out] or [out, in / group]), matrix e given by quantize(e) (a
/// cpu::Int8Quantized) when the file is written: once for the bytes, once for the scales (which
/// the file stores first), so memory stays at one matrix.
template <class Quantize>
void add_int8_streamed(SafetensorsWriter& w, const std::string& name, bool stacked, index_t E, index_t out, index_t in,
                       index_t group, Quantize quantize) {
    const index_t ng = group == 0 ? 1 : in / group;
    const Shape qs = stacked ? Shape{E, out, in} : Shape{out, in};
    const Shape ss = group == 0 ? (stacked ? Shape{E, out} : Shape{out}) : (stacked ? Shape{E, out, ng} : Shape{out, ng});
    w.add_streamed(name, DType::i8, qs, [quantize, E](const SafetensorsWriter::ByteSink& sink) {
        for (index_t e = 0; e < E; ++e) {
            const cpu::Int8Quantized q = quantize(e);
            sink(q.q.raw(), static_cast<std::size_t>(q.q.nbytes()));
        }
    });
    w.add_streamed(int8_scale_name(name), DType::f32, ss, [quantize, E](const SafetensorsWriter::ByteSink& sink) {
        for (index_t e = 0; e < E; ++e) {
            const cpu::Int8Quantized q = quantize(e);
            sink(q.scale.raw(), static_cast<std::size_t>(q.scale.nbytes()));
        }
    });
}

/// What quantize_checkpoint quantises and how.
struct QuantizeOptions {
    /// Inputs per scale: 0 (one scale per output channel) or a multiple of 32 dividing every
    /// quantised matrix's input count.
    index_t group = 0;
    /// The tensors to quantise (float, rank 2 or 3). Default: float tensors of rank 2 or 3 whose
    /// name ends in "weight" and that hold at least 4096 values.
    std::function<bool(const std::string& name, const TensorView& t)> select;
    /// The selected tensors stored [..., in, out] (MindSpore's transpose_b=False Linears): they
    /// are written [..., out, in]. Default: none.
    std::function<bool(const std::string& name)> in_out;
    /// The dtype of the float tensors not quantised: DType::f32 keeps each as it is; bf16 or
    /// f16 converts the floating-point ones (only those; e.g. "int8 experts, bf16 elsewhere").
    DType rest = DType::f32;
    /// Whether to convert the tensors not quantised (to `rest`) or keep them as they are.
    bool convert_rest = false;
};

/// What quantize_checkpoint wrote.
struct QuantizeReport {
    index_t quantized = 0;        ///< tensors written int8
    index_t kept = 0;             ///< tensors written as they were (or converted to `rest`)
    std::uint64_t bytes_in = 0;   ///< tensor bytes read
    std::uint64_t bytes_out = 0;  ///< tensor bytes written (scales included)
};

/// Writes `out`: the tensors of `in`, those opt.select picks quantised to int8 with their scales
/// (the convention above), the others kept (or converted to opt.rest); `in`'s metadata plus
/// "moe.quantization" = "int8" and "moe.int8.group". Streamed tensor by tensor. ConfigError for a
/// group that does not divide a selected matrix, ValueError for a NaN or infinite weight,
/// ConfigError when a selected tensor is not float of rank 2 or 3 or a "<name>_scale" exists.
inline QuantizeReport quantize_checkpoint(const SafetensorsFile& in, const std::filesystem::path& out,
                                          const QuantizeOptions& opt = {}) {
    const char* w = "io::quantize_checkpoint";
    check<ConfigError>(opt.rest == DType::f32 || opt.rest == DType::bf16 || opt.rest == DType::f16, w,
                       "rest must be F32, BF16 or F16, found ", dtype_name(opt.rest));
    std::function<bool(const std::string&, const TensorView&)> select = opt.select;
    if (!select)
        select = [](const std::string& name, const TensorView& t) {
            return is_float(t.dtype()) && (t.rank() == 2 || t.rank() == 3) && t.numel() >= 4096 && name.size() >= 6 &&
                   name.compare(name.size() - 6, 6, "weight") == 0;
        };
    SafetensorsWriter wr;
    for (const auto& [k, v] : in.metadata()) wr.add_metadata(k, v);
    wr.add_metadata("moe.quantization", "int8");
    wr.add_metadata("moe.int8.group", std::to_string(opt.group));
    QuantizeReport rep;
    for (const std::string& name : in.names()) {
        const TensorView t = in.get(name);
        rep.bytes_in += static_cast<std::uint64_t>(t.nbytes());
        if (!select(name, t)) {
            ++rep.kept;
            if (opt.convert_rest && is_float(t.dtype()) && t.dtype() != opt.rest) {
                const DType to = opt.rest;
                rep.bytes_out += static_cast<std::uint64_t>(t.numel() * dtype_size(to));
                wr.add_streamed(name, to, t.shape(), [t, to](const SafetensorsWriter::ByteSink& sink) {
                    const Tensor c = convert(t, to);
                    sink(c.raw(), static_cast<std::size_t>(c.nbytes()));
                });
            } else {
                // Written from the mapping as it lies (a file's tensors are contiguous): no copy.
                rep.bytes_out += static_cast<std::uint64_t>(t.nbytes());
                wr.add_streamed(name, t.dtype(), t.shape(), [t](const SafetensorsWriter::ByteSink& sink) {
                    sink(t.raw(), static_cast<std::size_t>(t.nbytes()));
                });
            }
            continue;
        }
        check<ConfigError>(is_float(t.dtype()) && (t.rank() == 2 || t.rank() == 3), w, "tensor '", name,
                           "' is selected but is ", dtype_name(t.dtype()), " ", t.shape().str(),
                           " (only float matrices [out, in] or stacks [E, out, in] are quantised)");
        check<ConfigError>(!in.contains(int8_scale_name(name)), w, "tensor '", name, "' is selected but '",
                           int8_scale_name(name), "' already exists");
        const bool io_layout = opt.in_out && opt.in_out(name);
        const index_t E = t.rank() == 3 ? t.dim(0) : 1;
        const index_t r0 = t.dim(t.rank() - 2), r1 = t.dim(t.rank() - 1);
        const index_t N = io_layout ? r1 : r0, K = io_layout ? r0 : r1;
        check<ConfigError>(cpu::valid_int8_group(opt.group, K), w, "tensor '", name, "': the group of ", opt.group,
                           " inputs does not divide its ", K, " inputs (or is not a multiple of 32)");
        const index_t ng = opt.group == 0 ? 1 : K / opt.group;
        ++rep.quantized;
        rep.bytes_out += static_cast<std::uint64_t>(E * N * K + E * N * ng * 4);
        add_int8_streamed(wr, name, t.rank() == 3, E, N, K, opt.group,
                          [t, io_layout, N, K, group = opt.group, name](index_t e) {
                              const Tensor m = convert(t.rank() == 3 ? t[e] : t, DType::f32);
                              const float* d = m.data<float>();
                              return cpu::quantize_int8(
                                  N, K, [&](index_t n, index_t k) { return io_layout ? d[k * N + n] : d[n * K + k]; },
                                  group, name + "[" + std::to_string(e) + "]");
                          });
    }
    wr.write(out);
    return rep;
}

}  // namespace moe::io
