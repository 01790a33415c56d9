// moe/core/tensor.hpp - Shape, non-owning views (TensorView, MatrixRef, WeightMatrix) and the
// Tensor that owns its elements or borrows them from an mmapped file (copy on write).
//
// Layout conventions (the ecosystem's): row-major, strides in elements, activations are
// [tokens, hidden], Linear weights are [out, in], stacked experts are [E, out, in]. Weights
// stored the other way round, [in, out] (MindSpore's transpose_b=False Linears, RingMoE's
// experts), are read in place through WeightMatrix's layout rather than transposed at load.
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

/// How a Linear weight matrix is stored: [out, in] (torch.nn.Linear, y = x W^T) or [in, out]
/// (MindSpore's _Linear with transpose_b=False, y = x W).
enum class WeightLayout : std::uint8_t { out_in, in_out };

inline const char* layout_name(WeightLayout l) noexcept { return l == WeightLayout::out_in ? "[out, in]" : "[in, out]"; }

/// A read-only Linear weight of `out` x `in` features as it is stored: `layout` says which axis
/// is the row, `ld` is the row stride of the stored matrix. The GEMMs read either layout in
/// place; an [out, in] ConstMatrixRef converts implicitly.
template <class T>
struct WeightMatrix {
    const T* data = nullptr;
    index_t out = 0;
    index_t in = 0;
    index_t ld = 0;
    WeightLayout layout = WeightLayout::out_in;

    constexpr WeightMatrix() = default;
    constexpr WeightMatrix(const T* d, index_t out_features, index_t in_features, index_t stride, WeightLayout l)
        : data(d), out(out_features), in(in_features), ld(stride), layout(l) {}
    /// An [out, in] matrix (rows = output features).
    constexpr WeightMatrix(ConstMatrixRef<T> m) : data(m.data), out(m.rows), in(m.cols), ld(m.stride) {}
    /// A contiguous [in, out] matrix.
    static constexpr WeightMatrix in_out(const T* d, index_t in_features, index_t out_features) {
        return {d, out_features, in_features, out_features, WeightLayout::in_out};
    }

    /// Element (output n, input k).
    constexpr T operator()(index_t n, index_t k) const noexcept {
        return layout == WeightLayout::out_in ? data[n * ld + k] : data[k * ld + n];
    }
    /// Output features [n0, n1) (the same storage).
    constexpr WeightMatrix outputs(index_t n0, index_t n1) const noexcept {
        return layout == WeightLayout::out_in ? WeightMatrix(data + n0 * ld, n1 - n0, in, ld, layout)
                                              : WeightMatrix(data + n0, n1 - n0, in, ld, layout);
    }
    /// The stored matrix: [out, in] or [in, out] as `layout` says.
    constexpr ConstMatrixRef<T> stored() const noexcept {
        return layout == WeightLayout::out_in ? ConstMatrixRef<T>(data, out, in, ld) : ConstMatrixRef<T>(data, in, out, ld);
    }
};

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

/// A contiguous tensor that owns its elements (64-byte aligned) or borrows them read-only from
/// memory something else keeps alive (an mmapped safetensors file: Tensor::borrow).
///
/// A borrowed tensor reads in place, never copying; the first mutable access (raw(), data<T>(),
/// span<T>(), matrix<T>() on a non-const tensor) gives it a private copy first (copy on write),
/// so writing to a tensor never touches the memory it borrowed from. Tensors are move-only.
class Tensor {
public:
    Tensor() = default;
    /// Zero-initialised tensor of `shape` and `dtype`.
    Tensor(DType dtype, Shape shape) : dtype_(dtype), shape_(shape) {
        const std::size_t n = nbytes();
        if (n > 0) {
            buf_ = allocate(n);
            std::memset(buf_.get(), 0, n);
        }
    }
    /// Zero-initialised f32 tensor.
    explicit Tensor(Shape shape) : Tensor(DType::f32, shape) {}

    Tensor(const Tensor&) = delete;
    Tensor& operator=(const Tensor&) = delete;
    Tensor(Tensor&& o) noexcept
        : buf_(std::move(o.buf_)), dtype_(o.dtype_), shape_(o.shape_), borrowed_(std::exchange(o.borrowed_, false)) {}
    Tensor& operator=(Tensor&& o) noexcept {
        buf_ = std::move(o.buf_);
        dtype_ = o.dtype_;
        shape_ = o.shape_;
        borrowed_ = std::exchange(o.borrowed_, false);
        return *this;
    }
    ~Tensor() = default;

    /// A tensor reading the contiguous view v in place (no copy); `keep_alive` (for example
    /// SafetensorsFile::keep_alive()) is held until the tensor and its moves are gone. With a
    /// null keep_alive the caller guarantees that v outlives the tensor.
    static Tensor borrow(const TensorView& v, std::shared_ptr<const void> keep_alive) {
        check<ShapeError>(v.contiguous(), "Tensor::borrow", "view of shape ", v.shape().str(), " with strides ",
                          v.strides().str(), " is not contiguous (copy it with Tensor::copy_of)");
        check<ShapeError>(!v.empty() || v.numel() == 0, "Tensor::borrow", "view of shape ", v.shape().str(),
                          " has no data");
        Tensor t;
        t.dtype_ = v.dtype();
        t.shape_ = v.shape();
        t.buf_ = std::shared_ptr<void>(std::const_pointer_cast<void>(std::move(keep_alive)), const_cast<void*>(v.raw()));
        t.borrowed_ = true;
        return t;
    }

    /// Copies any view (strided or not) into a new contiguous tensor of the same dtype.
    static Tensor copy_of(const TensorView& v) {
        check<ShapeError>(!v.empty() || v.numel() == 0, "Tensor::copy_of", "view of shape ", v.shape().str(),
                          " has no data");
        Tensor t(v.dtype(), v.shape());
        const std::size_t es = dtype_size(v.dtype());
        if (v.contiguous()) {
            if (t.nbytes()) std::memcpy(t.buf_.get(), v.raw(), t.nbytes());
            return t;
        }
        // Generic strided copy, element by element.
        const index_t n = v.numel();
        std::array<index_t, Shape::kMaxRank> idx{};
        auto* dst = static_cast<std::byte*>(t.buf_.get());
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
        if (!values.empty()) std::memcpy(t.buf_.get(), values.data(), t.nbytes());
        return t;
    }

    DType dtype() const noexcept { return dtype_; }
    const Shape& shape() const noexcept { return shape_; }
    int rank() const noexcept { return shape_.rank(); }
    index_t dim(int i) const { return shape_.dim(i); }
    index_t numel() const noexcept { return shape_.numel(); }
    std::size_t nbytes() const noexcept { return static_cast<std::size_t>(numel()) * dtype_size(dtype_); }
    /// Whether the elements are read in place from borrowed memory (no copy made yet).
    bool borrowed() const noexcept { return borrowed_; }
    /// Mutable elements (a borrowed tensor takes its private copy first).
    void* raw() {
        if (borrowed_) own();
        return buf_.get();
    }
    const void* raw() const noexcept { return buf_.get(); }

    template <class T>
    T* data(std::string_view where = "Tensor::data") {
        check_dtype<T>(where);
        return static_cast<T*>(raw());
    }
    template <class T>
    const T* data(std::string_view where = "Tensor::data") const {
        check_dtype<T>(where);
        return static_cast<const T*>(buf_.get());
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
        check<ShapeError>(rank() == 2, where, "expected a 2-D tensor, found shape ", shape_.str());
        return {data<T>(where), shape_[0], shape_[1]};
    }

    /// Reinterprets the shape in place; the element count must not change.
    Tensor& reshape(Shape s) {
        check<ShapeError>(s.numel() == numel(), "Tensor::reshape", "cannot reshape ", shape_.str(), " to ", s.str());
        shape_ = s;
        return *this;
    }

private:
    static std::shared_ptr<void> allocate(std::size_t n) {
        return std::shared_ptr<void>(::operator new(n, std::align_val_t{kAlignment}), detail::AlignedFree{});
    }
    template <class T>
    void check_dtype(std::string_view where) const {
        check<DTypeError>(dtype_v<T> == dtype_, where, "expected dtype ", dtype_name(dtype_v<T>), ", found ",
                          dtype_name(dtype_));
    }
    // Copy on write: replace the borrowed elements by an owned copy.
    void own() {
        borrowed_ = false;
        if (!buf_) return;
        std::shared_ptr<void> mine = allocate(std::max<std::size_t>(nbytes(), 1));
        std::memcpy(mine.get(), buf_.get(), nbytes());
        buf_ = std::move(mine);
    }

    std::shared_ptr<void> buf_;  // owned (AlignedFree) or an aliasing pointer into borrowed memory
    DType dtype_ = DType::f32;
    Shape shape_;
    bool borrowed_ = false;
};

/// A contiguous copy of the weight w stored as `as` ([out, in] or [in, out]), in w's element type
/// (a blocked transpose when the layouts differ).
template <class W>
Tensor copy_as(WeightMatrix<W> w, WeightLayout as) {
    const ConstMatrixRef<W> src = w.stored();
    const bool same = w.layout == as;
    Tensor t(dtype_v<W>, same ? Shape{src.rows, src.cols} : Shape{src.cols, src.rows});
    W* d = t.data<W>();
    if (same) {
        for (index_t r = 0; r < src.rows; ++r)
            std::copy(src.row(r), src.row(r) + src.cols, d + r * src.cols);
        return t;
    }
    constexpr index_t kBlock = 32;
    for (index_t i0 = 0; i0 < src.rows; i0 += kBlock)
        for (index_t j0 = 0; j0 < src.cols; j0 += kBlock) {
            const index_t i1 = std::min(src.rows, i0 + kBlock), j1 = std::min(src.cols, j0 + kBlock);
            for (index_t j = j0; j < j1; ++j)
                for (index_t i = i0; i < i1; ++i) d[j * src.rows + i] = src(i, j);
        }
    return t;
}

/// Converts a floating-point view (f32, bf16, f16; any strides) to a new tensor of dtype `to`.
inline Tensor convert(const TensorView& v, DType to) {
    check<DTypeError>(is_float_dtype(v.dtype()) && is_float_dtype(to), "convert", "only f32, bf16 and f16 convert, not ",
                      dtype_name(v.dtype()), " -> ", dtype_name(to));
    Tensor src = v.contiguous() ? Tensor() : Tensor::copy_of(v);
    const void* in = v.contiguous() ? v.raw() : src.raw();
    Tensor out(to, v.shape());
    void* const dst = out.raw();
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
            case DType::bf16: static_cast<bf16*>(dst)[i] = bf16(f); break;
            case DType::f16: static_cast<f16*>(dst)[i] = f16(f); break;
            default: static_cast<float*>(dst)[i] = f; break;
        }
    }
    return out;
}

/// A growable, 64-byte aligned scratch buffer of T reused between calls (no shrink, no init).
/// Components own their workspaces; nothing is global. Modules that never run at the same time
/// (the blocks of an encoder, run one after the other) can share one buffer: a.share(b) makes a
/// use b's storage, so an encoder holds one set of activation buffers, not one per block.
template <class T>
class Scratch {
    static_assert(std::is_trivially_copyable_v<T>);

public:
    Scratch() = default;
    /// Copies start empty (and unshared): scratch contents are never meaningful to a copy.
    Scratch(const Scratch&) noexcept {}
    Scratch& operator=(const Scratch&) noexcept {
        st_.reset();
        return *this;
    }
    Scratch(Scratch&&) noexcept = default;
    Scratch& operator=(Scratch&&) noexcept = default;
    ~Scratch() = default;

    /// At least n elements; contents are unspecified after growth (and after a sharer's call).
    T* get(std::size_t n) {
        if (!st_) st_ = std::make_shared<Storage>();
        if (n > st_->cap) {
            st_->buf.reset(static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{kAlignment})));
            st_->cap = n;
        }
        return st_->buf.get();
    }
    /// From now on this buffer is `other`'s (whichever asks for more grows it for both).
    void share(Scratch& other) {
        if (!other.st_) other.st_ = std::make_shared<Storage>();
        st_ = other.st_;
    }
    /// Whether this and `other` use one storage.
    bool shares_with(const Scratch& other) const noexcept { return st_ && st_ == other.st_; }

private:
    struct Storage {
        std::unique_ptr<T, detail::AlignedFree> buf;
        std::size_t cap = 0;
    };
    std::shared_ptr<Storage> st_;
};

}  // namespace moe
