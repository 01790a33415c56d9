// moe/core/tensor.hpp - Shape, non-owning views (TensorView, MatrixRef) and the owning Tensor.
//
// Layout conventions (the ecosystem's): row-major, strides in elements, activations are
// [tokens, hidden], Linear weights are [out, in], stacked experts are [E, out, in].
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <type_traits>
#include <utility>

#include "moe/core/dtype.hpp"
#include "moe/core/error.hpp"

namespace moe {

using index_t = std::int64_t;

/// Alignment of every buffer the library allocates (one cache line, one AVX-512 register).
inline constexpr std::size_t kAlignment = 64;

/// A shape of rank 0..kMaxRank with inline storage (no allocation).
class Shape {
public:
    static constexpr int kMaxRank = 8;

    constexpr Shape() = default;
    Shape(std::initializer_list<index_t> dims) { assign(dims.begin(), dims.end()); }
    template <class It>
    Shape(It first, It last) { assign(first, last); }
    explicit Shape(std::span<const index_t> dims) { assign(dims.begin(), dims.end()); }

    constexpr int rank() const noexcept { return rank_; }
    constexpr index_t operator[](int i) const noexcept { return dims_[static_cast<std::size_t>(i)]; }
    constexpr index_t& operator[](int i) noexcept { return dims_[static_cast<std::size_t>(i)]; }
    /// Dimension i, counting from the back for negative i; throws on a bad axis.
    index_t dim(int i) const {
        const int a = i < 0 ? i + rank_ : i;
        check<ShapeError>(a >= 0 && a < rank_, "Shape::dim", "axis ", i, " out of range for rank ", rank_);
        return dims_[static_cast<std::size_t>(a)];
    }
    constexpr const index_t* begin() const noexcept { return dims_.data(); }
    constexpr const index_t* end() const noexcept { return dims_.data() + rank_; }
    /// Number of elements (1 for rank 0).
    constexpr index_t numel() const noexcept {
        index_t n = 1;
        for (int i = 0; i < rank_; ++i) n *= dims_[static_cast<std::size_t>(i)];
        return n;
    }
    std::string str() const { return shape_str(*this); }

    friend bool operator==(const Shape& a, const Shape& b) noexcept {
        return a.rank_ == b.rank_ && std::equal(a.begin(), a.end(), b.begin());
    }

private:
    template <class It>
    void assign(It first, It last) {
        const auto n = std::distance(first, last);
        check<ShapeError>(n >= 0 && n <= kMaxRank, "Shape", "rank ", n, " exceeds the maximum ", kMaxRank);
        rank_ = static_cast<int>(n);
        int i = 0;
        for (; first != last; ++first) {
            const auto d = static_cast<index_t>(*first);
            check<ShapeError>(d >= 0, "Shape", "negative dimension ", d);
            dims_[static_cast<std::size_t>(i++)] = d;
        }
    }

    std::array<index_t, kMaxRank> dims_{};
    int rank_ = 0;
};

/// Row-major contiguous strides of `shape`, in elements.
inline Shape contiguous_strides(const Shape& shape) {
    std::array<index_t, Shape::kMaxRank> s{};
    index_t acc = 1;
    for (int i = shape.rank() - 1; i >= 0; --i) {
        s[static_cast<std::size_t>(i)] = acc;
        acc *= shape[i];
    }
    return Shape(s.begin(), s.begin() + shape.rank());
}

/// A typed, non-owning 2-D row-major matrix: `rows` x `cols` with `stride` elements between rows.
/// The hot-path currency of the kernels. T may be const.
template <class T>
struct MatrixRef {
    T* data = nullptr;
    index_t rows = 0;
    index_t cols = 0;
    index_t stride = 0;

    constexpr MatrixRef() = default;
    constexpr MatrixRef(T* d, index_t r, index_t c) : data(d), rows(r), cols(c), stride(c) {}
    constexpr MatrixRef(T* d, index_t r, index_t c, index_t s) : data(d), rows(r), cols(c), stride(s) {}
    /// Implicit conversion to a view of const elements.
    template <class U>
        requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>)
    constexpr MatrixRef(const MatrixRef<U>& o) : data(o.data), rows(o.rows), cols(o.cols), stride(o.stride) {}

    constexpr T* row(index_t r) const noexcept { return data + r * stride; }
    constexpr T& operator()(index_t r, index_t c) const noexcept { return data[r * stride + c]; }
    /// Rows [first, first + count).
    constexpr MatrixRef block_rows(index_t first, index_t count) const noexcept {
        return {data + first * stride, count, cols, stride};
    }
    constexpr bool contiguous() const noexcept { return stride == cols; }
    constexpr index_t size() const noexcept { return rows * cols; }
};
template <class T>
using ConstMatrixRef = MatrixRef<const T>;

/// A non-owning, strided, dtype-tagged N-D view. Does not keep its memory alive.
class TensorView {
public:
    TensorView() = default;
    TensorView(const void* data, DType dtype, Shape shape)
        : data_(static_cast<const std::byte*>(data)), dtype_(dtype), shape_(shape), strides_(contiguous_strides(shape)) {}
    TensorView(const void* data, DType dtype, Shape shape, Shape strides)
        : data_(static_cast<const std::byte*>(data)), dtype_(dtype), shape_(shape), strides_(strides) {
        check<ShapeError>(shape.rank() == strides.rank(), "TensorView", "shape ", shape.str(), " and strides ",
                          strides.str(), " differ in rank");
    }

    DType dtype() const noexcept { return dtype_; }
    const Shape& shape() const noexcept { return shape_; }
    const Shape& strides() const noexcept { return strides_; }
    int rank() const noexcept { return shape_.rank(); }
    index_t dim(int i) const { return shape_.dim(i); }
    index_t numel() const noexcept { return shape_.numel(); }
    std::size_t nbytes() const noexcept { return static_cast<std::size_t>(numel()) * dtype_size(dtype_); }
    const void* raw() const noexcept { return data_; }
    bool empty() const noexcept { return data_ == nullptr; }

    bool contiguous() const noexcept { return strides_ == contiguous_strides(shape_); }

    /// Typed pointer; throws DTypeError when T does not match the view's dtype.
    template <class T>
    const T* data(std::string_view where = "TensorView::data") const {
        check<DTypeError>(dtype_v<T> == dtype_, where, "expected dtype ", dtype_name(dtype_v<T>), ", found ",
                          dtype_name(dtype_));
        return reinterpret_cast<const T*>(data_);
    }

    /// The sub-view at index i of the first axis (rank drops by one).
    TensorView operator[](index_t i) const {
        check<ShapeError>(rank() >= 1 && i >= 0 && i < shape_[0], "TensorView[]", "index ", i,
                          " out of range for shape ", shape_.str());
        Shape s(shape_.begin() + 1, shape_.end());
        Shape st(strides_.begin() + 1, strides_.end());
        return TensorView(data_ + static_cast<std::size_t>(i * strides_[0]) * dtype_size(dtype_), dtype_, s, st);
    }

    /// Same elements, new shape; requires a contiguous view and an equal element count.
    TensorView reshape(Shape s) const {
        check<ShapeError>(contiguous(), "TensorView::reshape", "view is not contiguous");
        check<ShapeError>(s.numel() == numel(), "TensorView::reshape", "cannot reshape ", shape_.str(), " to ",
                          s.str());
        return TensorView(data_, dtype_, s);
    }

    /// A 2-D typed view; throws when the rank, dtype or inner stride does not fit.
    template <class T>
    MatrixRef<const T> matrix(std::string_view where = "TensorView::matrix") const {
        check<ShapeError>(rank() == 2, where, "expected a 2-D tensor, found shape ", shape_.str());
        check<ShapeError>(strides_[1] == 1, where, "inner dimension is not contiguous");
        return {data<T>(where), shape_[0], shape_[1], strides_[0]};
    }

    /// Throws ShapeError naming `what` unless the shape equals `expected`.
    const TensorView& expect_shape(const Shape& expected, std::string_view what) const {
        check<ShapeError>(shape_ == expected, what, "expected shape ", expected.str(), ", found ", shape_.str());
        return *this;
    }

private:
    const std::byte* data_ = nullptr;
    DType dtype_ = DType::f32;
    Shape shape_;
    Shape strides_;
};

namespace detail {
struct AlignedFree {
    void operator()(void* p) const noexcept { ::operator delete(p, std::align_val_t{kAlignment}); }
};
}  // namespace detail

/// An owning, contiguous, 64-byte aligned tensor.
class Tensor {
public:
    Tensor() = default;
    /// Zero-initialised tensor of `shape` and `dtype`.
    Tensor(DType dtype, Shape shape) : dtype_(dtype), shape_(shape) {
        const std::size_t n = nbytes();
        if (n > 0) {
            buf_.reset(::operator new(n, std::align_val_t{kAlignment}));
            std::memset(buf_.get(), 0, n);
        }
    }
    /// Zero-initialised f32 tensor.
    explicit Tensor(Shape shape) : Tensor(DType::f32, shape) {}

    /// Copies any view (strided or not) into a new contiguous tensor of the same dtype.
    static Tensor copy_of(const TensorView& v) {
        check<ShapeError>(!v.empty() || v.numel() == 0, "Tensor::copy_of", "view of shape ", v.shape().str(),
                          " has no data");
        Tensor t(v.dtype(), v.shape());
        const std::size_t es = dtype_size(v.dtype());
        if (v.contiguous()) {
            if (t.nbytes()) std::memcpy(t.raw(), v.raw(), t.nbytes());
            return t;
        }
        // Generic strided copy, element by element.
        const index_t n = v.numel();
        std::array<index_t, Shape::kMaxRank> idx{};
        auto* dst = static_cast<std::byte*>(t.raw());
        const auto* src = static_cast<const std::byte*>(v.raw());
        for (index_t i = 0; i < n; ++i) {
            index_t off = 0;
            for (int a = 0; a < v.rank(); ++a) off += idx[static_cast<std::size_t>(a)] * v.strides()[a];
            std::memcpy(dst + static_cast<std::size_t>(i) * es, src + static_cast<std::size_t>(off) * es, es);
            for (int a = v.rank() - 1; a >= 0; --a) {
                if (++idx[static_cast<std::size_t>(a)] < v.shape()[a]) break;
                idx[static_cast<std::size_t>(a)] = 0;
            }
        }
        return t;
    }

    /// A tensor of `shape` holding a copy of `values`.
    template <class T>
    static Tensor from(Shape shape, std::span<const T> values) {
        check<ShapeError>(static_cast<index_t>(values.size()) == shape.numel(), "Tensor::from", values.size(),
                          " values do not fill shape ", shape.str());
        Tensor t(dtype_v<T>, shape);
        if (!values.empty()) std::memcpy(t.raw(), values.data(), t.nbytes());
        return t;
    }

    DType dtype() const noexcept { return dtype_; }
    const Shape& shape() const noexcept { return shape_; }
    int rank() const noexcept { return shape_.rank(); }
    index_t dim(int i) const { return shape_.dim(i); }
    index_t numel() const noexcept { return shape_.numel(); }
    std::size_t nbytes() const noexcept { return static_cast<std::size_t>(numel()) * dtype_size(dtype_); }
    void* raw() noexcept { return buf_.get(); }
    const void* raw() const noexcept { return buf_.get(); }

    template <class T>
    T* data(std::string_view where = "Tensor::data") {
        check<DTypeError>(dtype_v<T> == dtype_, where, "expected dtype ", dtype_name(dtype_v<T>), ", found ",
                          dtype_name(dtype_));
        return static_cast<T*>(buf_.get());
    }
    template <class T>
    const T* data(std::string_view where = "Tensor::data") const {
        return const_cast<Tensor*>(this)->data<T>(where);
    }
    template <class T>
    std::span<T> span() {
        return {data<T>(), static_cast<std::size_t>(numel())};
    }
    template <class T>
    std::span<const T> span() const {
        return {data<T>(), static_cast<std::size_t>(numel())};
    }

    TensorView view() const { return TensorView(buf_.get(), dtype_, shape_); }
    operator TensorView() const { return view(); }

    /// Mutable 2-D view; the tensor must be rank 2.
    template <class T>
    MatrixRef<T> matrix(std::string_view where = "Tensor::matrix") {
        check<ShapeError>(rank() == 2, where, "expected a 2-D tensor, found shape ", shape_.str());
        return {data<T>(where), shape_[0], shape_[1]};
    }
    template <class T>
    MatrixRef<const T> matrix(std::string_view where = "Tensor::matrix") const {
        return const_cast<Tensor*>(this)->matrix<T>(where);
    }

    /// Reinterprets the shape in place; the element count must not change.
    Tensor& reshape(Shape s) {
        check<ShapeError>(s.numel() == numel(), "Tensor::reshape", "cannot reshape ", shape_.str(), " to ", s.str());
        shape_ = s;
        return *this;
    }

private:
    std::unique_ptr<void, detail::AlignedFree> buf_;
    DType dtype_ = DType::f32;
    Shape shape_;
};

/// Converts a floating-point view (f32, bf16, f16; any strides) to a new tensor of dtype `to`.
inline Tensor convert(const TensorView& v, DType to) {
    auto is_float = [](DType t) { return t == DType::f32 || t == DType::bf16 || t == DType::f16; };
    check<DTypeError>(is_float(v.dtype()) && is_float(to), "convert", "only f32, bf16 and f16 convert, not ",
                      dtype_name(v.dtype()), " -> ", dtype_name(to));
    Tensor src = v.contiguous() ? Tensor() : Tensor::copy_of(v);
    const void* in = v.contiguous() ? v.raw() : src.raw();
    Tensor out(to, v.shape());
    const auto n = static_cast<std::size_t>(v.numel());
    auto load = [&](std::size_t i) -> float {
        switch (v.dtype()) {
            case DType::bf16: return to_float(static_cast<const bf16*>(in)[i]);
            case DType::f16: return to_float(static_cast<const f16*>(in)[i]);
            default: return static_cast<const float*>(in)[i];
        }
    };
    for (std::size_t i = 0; i < n; ++i) {
        const float f = load(i);
        switch (to) {
            case DType::bf16: static_cast<bf16*>(out.raw())[i] = bf16(f); break;
            case DType::f16: static_cast<f16*>(out.raw())[i] = f16(f); break;
            default: static_cast<float*>(out.raw())[i] = f; break;
        }
    }
    return out;
}

/// A growable, 64-byte aligned scratch buffer of T reused between calls (no shrink, no init).
/// Components own their workspaces; nothing is global.
template <class T>
class Scratch {
    static_assert(std::is_trivially_copyable_v<T>);

public:
    Scratch() = default;
    /// Copies start empty: scratch contents are never meaningful to a copy.
    Scratch(const Scratch&) noexcept {}
    Scratch& operator=(const Scratch&) noexcept { return *this; }
    Scratch(Scratch&&) noexcept = default;
    Scratch& operator=(Scratch&&) noexcept = default;
    ~Scratch() = default;

    /// At least n elements; contents are unspecified after growth.
    T* get(std::size_t n) {
        if (n > cap_) {
            buf_.reset(static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{kAlignment})));
            cap_ = n;
        }
        return buf_.get();
    }

private:
    std::unique_ptr<T, detail::AlignedFree> buf_;
    std::size_t cap_ = 0;
};

}  // namespace moe
